"""BGE-M3 hybrid search: dense + sparse + ColBERT scores, metadata filters, fusion, save/load.

One BGE-M3 forward pass gives three representations; ``HybridIndex`` stores all three and
ranks by their weighted sum (or by reciprocal rank fusion). Filters on metadata are applied
before the top k are taken.

Usage:
    python examples/m3_hybrid_search.py          # BAAI/bge-m3 (hub or HF cache, 2.3 GB)
    python examples/m3_hybrid_search.py --tiny   # offline: tiny random BGE-M3-shaped model
"""

from __future__ import annotations

import argparse
import tempfile

from bge_integrations import BGEM3Embedder, HybridIndex
from bge_integrations.offline import tiny_model

DOCS = [
    ("BGE-M3 supports more than 100 languages and inputs of up to 8192 tokens.",
     {"lang": "en", "year": 2024}),
    ("BGE-M3 unterstützt mehr als 100 Sprachen und Eingaben mit bis zu 8192 Tokens.",
     {"lang": "de", "year": 2024}),
    ("Sparse lexical weights reward exact matches of rare words such as product codes.",
     {"lang": "en", "year": 2023}),
    ("ColBERT late interaction compares every query token with every passage token.",
     {"lang": "en", "year": 2020}),
    ("Der Eiffelturm steht in Paris und ist 330 Meter hoch.", {"lang": "de", "year": 2019}),
    ("The Eiffel Tower in Paris is 330 metres tall.", {"lang": "en", "year": 2019}),
]
QUERY = "How tall is the Eiffel Tower?"


def show(title: str, hits: list) -> None:
    """Print one result list with every per-mode score."""
    print(f"\n{title}")
    for hit in hits:
        parts = ", ".join(f"{k}={v:.3f}" for k, v in hit.scores.items())
        print(f"  {hit.score:.4f} [{hit.id}] {hit.metadata}  ({parts})  {hit.text[:60]}")


def main(argv: list[str] | None = None) -> int:
    """Index ``DOCS`` and search them in each mode, with filters and both fusions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="BAAI/bge-m3", help="BGE-M3 hub id or directory")
    parser.add_argument("--tiny", action="store_true",
                        help="use a tiny random BGE-M3-shaped model (offline; rankings are noise)")
    args = parser.parse_args(argv)

    m3 = BGEM3Embedder(tiny_model("xlm-roberta") if args.tiny else args.model)
    index = HybridIndex(m3)
    index.add([text for text, _ in DOCS], metadatas=[meta for _, meta in DOCS],
              ids=[f"doc-{i}" for i in range(len(DOCS))])
    print(f"indexed {len(index)} documents")

    show("hybrid (0.4 dense + 0.2 sparse + 0.4 colbert):", index.search(QUERY, k=3))
    show("sparse only:", index.search(QUERY, k=3, mode="sparse"))
    show("dense-heavy weights (0.7, 0.3, 0.0):", index.search(QUERY, k=3, weights=(0.7, 0.3, 0)))
    show("reciprocal rank fusion:", index.search(QUERY, k=3, fusion="rrf"))
    german = index.search(QUERY, k=3, filter={"lang": "de"})
    show("filter lang=de:", german)
    recent = index.search(QUERY, k=3, filter={"year": {"$gte": 2023}})
    show("filter year>=2023:", recent)
    assert all(h.metadata["lang"] == "de" for h in german)
    assert all(h.metadata["year"] >= 2023 for h in recent)

    out = m3.encode_queries([QUERY], sparse=True)
    top = sorted(m3.convert_to_tokens(out.sparse[0]).items(), key=lambda kv: -kv[1])[:5]
    print("\nquery lexical weights:", ", ".join(f"{t!r}: {w:.3f}" for t, w in top))
    pair = m3.compute_score((QUERY, DOCS[5][0]))
    print("compute_score:", {k: round(v, 4) for k, v in pair.items()})

    with tempfile.TemporaryDirectory() as tmp:
        index.save(tmp)
        reloaded = HybridIndex.load(tmp, m3)
        before = [h.id for h in index.search(QUERY, k=3)]
        same = [h.id for h in reloaded.search(QUERY, k=3)] == before
    print(f"\nsaved and reloaded: {len(reloaded)} documents, same ranking: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
