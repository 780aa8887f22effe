"""Hybrid (dense + sparse) search with BGE-M3 in LangChain's QdrantVectorStore.

BGE-M3 gives a dense vector and lexical (sparse) weights from one model: ``BGEEmbeddings``
supplies the dense side, ``BGEM3SparseEmbeddings`` the sparse side, and Qdrant fuses the two
rankings. Both adapters share one copy of the weights.

Usage:
    python examples/langchain_qdrant_hybrid.py                 # BAAI/bge-m3 from the hub
    python examples/langchain_qdrant_hybrid.py --tiny          # offline, tiny random model

Needs ``pip install bge-integrations[langchain,qdrant]``.
"""

from __future__ import annotations

import argparse

from langchain_qdrant import QdrantVectorStore, RetrievalMode

from bge_integrations.langchain import BGEEmbeddings, BGEM3SparseEmbeddings
from bge_integrations.offline import tiny_model

TEXTS = [
    "BGE-M3 produces dense, sparse and multi-vector representations in one pass.",
    "The giant panda is a bear species endemic to China.",
    "Qdrant stores dense and sparse vectors side by side in one collection.",
    "Paris is the capital of France.",
]


def main(argv: list[str] | None = None) -> int:
    """Index ``TEXTS`` in an in-memory Qdrant collection and print the best hybrid matches."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="BAAI/bge-m3", help="BGE-M3 hub id or directory.")
    parser.add_argument("--tiny", action="store_true",
                        help="use a tiny random BGE-M3-shaped model (offline; rankings are noise)")
    parser.add_argument("--query", default="Which vector database keeps sparse vectors?")
    parser.add_argument("-k", type=int, default=2, help="number of results")
    args = parser.parse_args(argv)

    model = tiny_model("xlm-roberta") if args.tiny else args.model
    dense = BGEEmbeddings(model_name=model)
    sparse = BGEM3SparseEmbeddings(model_name=model)
    store = QdrantVectorStore.from_texts(
        TEXTS, dense, metadatas=[{"source": f"doc-{i}"} for i in range(len(TEXTS))],
        location=":memory:", collection_name="bge-m3-hybrid",
        retrieval_mode=RetrievalMode.HYBRID, sparse_embedding=sparse)
    hits = store.similarity_search_with_score(args.query, k=args.k)
    print(f"query: {args.query}")
    for doc, score in hits:
        print(f"{score:.4f}  [{doc.metadata['source']}]  {doc.page_content}")
    print(f"answer: {hits[0][0].page_content}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
