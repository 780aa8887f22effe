"""Quickstart: embed queries and passages with a BGE model and rank passages by similarity.

``BGEEmbedder`` looks the model up in the registry: BAAI/bge-small-en-v1.5 gets CLS pooling
and the instruction "Represent this sentence for searching relevant passages: " on queries;
passages are embedded as they are. Vectors are L2-normalized, so a dot product is a cosine.

Usage:
    python examples/quickstart.py                # BAAI/bge-small-en-v1.5 (hub or HF cache)
    python examples/quickstart.py --offline      # the packaged all-MiniLM-L6-v2, no network
    python examples/quickstart.py --tiny         # tiny random BGE-shaped model (scores are noise)
"""

from __future__ import annotations

import argparse

from bge_integrations import BGEEmbedder
from bge_integrations.offline import FALLBACK_MODEL, model_or_fallback, tiny_model

PASSAGES = [
    "The giant panda is a bear species endemic to China; it eats mostly bamboo.",
    "Paris is the capital and largest city of France.",
    "BGE is a family of text embedding models released by BAAI.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
]
QUERIES = ["What do pandas eat?", "Which organisation released the BGE models?"]


def main(argv: list[str] | None = None) -> int:
    """Embed ``QUERIES`` and ``PASSAGES`` and print the best passage for each query."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="BAAI/bge-small-en-v1.5", help="hub id or directory")
    parser.add_argument("--offline", action="store_true",
                        help=f"use the packaged {FALLBACK_MODEL} (mean pooling), no download")
    parser.add_argument("--tiny", action="store_true",
                        help="use a tiny random BGE-shaped model (offline; scores are noise)")
    args = parser.parse_args(argv)

    if args.tiny:
        model = tiny_model("bert")
    else:
        model = FALLBACK_MODEL if args.offline else args.model
        model, notice = model_or_fallback(model)  # announces a fallback when the hub is down
        if notice:
            print(f"note: {notice}")
    embedder = BGEEmbedder(model)
    print(f"model: {model} ({embedder.spec.pooling.value} pooling, {embedder.dim}-d), "
          f"query instruction: {embedder.spec.query_instruction!r}")

    q = embedder.encode_queries(QUERIES)      # instruction applied
    p = embedder.encode_documents(PASSAGES)   # no instruction
    scores = q @ p.T                          # cosine similarities, shape (2, 4)
    for query, row in zip(QUERIES, scores, strict=True):
        best = int(row.argmax())
        print(f"query: {query}\n  best: {PASSAGES[best]}  (score {row[best]:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
