"""In-context learning with bge-en-icl: few-shot examples steer the query embedding.

bge-en-icl (a Mistral-7B embedder) reads ``<instruct>{task}\\n<query>{query}\\n<response>``
after a prefix of worked examples; documents are embedded as plain text. ``BGEEmbedder``
builds that prompt exactly as FlagEmbedding's FlagICLModel does.

Usage:
    python examples/icl_bge_en_icl.py            # BAAI/bge-en-icl (hub or HF cache, ~15 GB)
    python examples/icl_bge_en_icl.py --tiny     # offline: tiny random Mistral-shaped model
"""

from __future__ import annotations

import argparse

from bge_integrations import BGEEmbedder
from bge_integrations.offline import tiny_model

TASK = "Given a web search query, retrieve relevant passages that answer the query."
EXAMPLES = [
    {"instruct": TASK, "query": "what is a virtual interface",
     "response": "A virtual interface is a software-defined abstraction that mimics the "
                 "behaviour of a physical network interface."},
    {"instruct": TASK, "query": "causes of back pain in female for a week",
     "response": "Back pain in females lasting a week can stem from muscle strain, poor "
                 "posture or menstrual cramps."},
]
QUERIES = ["how much protein should a female eat", "summit define"]
DOCUMENTS = [
    "As a general guideline, the CDC's average requirement of protein for women ages 19 to "
    "70 is 46 grams per day.",
    "Definition of summit: the highest point of a mountain; the highest level; a meeting "
    "between heads of government.",
]


def main(argv: list[str] | None = None) -> int:
    """Embed ``QUERIES`` with and without few-shot examples and score them against documents."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="BAAI/bge-en-icl", help="hub id or directory")
    parser.add_argument("--tiny", action="store_true",
                        help="use a tiny random Mistral-shaped model (offline; scores are noise)")
    args = parser.parse_args(argv)

    model = tiny_model("mistral") if args.tiny else args.model
    embedder = BGEEmbedder(model, examples=EXAMPLES, query_max_length=512)
    print(f"family: {embedder.spec.family.value}, pooling: {embedder.spec.pooling.value}")
    print("query body:", repr(embedder.query_texts(QUERIES[:1])[0]))

    docs = embedder.encode_documents(DOCUMENTS)
    with_examples = embedder.encode_queries(QUERIES) @ docs.T
    embedder.set_examples(None)  # zero-shot: the instruction alone
    zero_shot = embedder.encode_queries(QUERIES) @ docs.T
    print("scores with examples:\n", with_examples.round(4))
    print("scores zero-shot:\n", zero_shot.round(4))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
