"""BGE-M3 hybrid retrieval in LlamaIndex: ``BGEM3Retriever`` and a ``RetrieverQueryEngine``.

The retriever ranks chunks by BGE-M3's dense, sparse and ColBERT scores together over an
in-process ``HybridIndex`` (no server), applies LlamaIndex ``MetadataFilters``, and accepts
new documents and deletions. The LLM is llama-index-core's ``MockLLM``, so the script runs
offline; pass any LlamaIndex LLM to ``RetrieverQueryEngine.from_args`` for real answers.

Usage:
    python examples/llama_index_m3_retriever.py               # BAAI/bge-m3 from the hub
    python examples/llama_index_m3_retriever.py --tiny        # offline, tiny random model

Needs ``pip install bge-integrations[llama-index]``.
"""

from __future__ import annotations

import argparse

from llama_index.core import Document
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters

from bge_integrations.llama_index import BGEM3Retriever
from bge_integrations.offline import tiny_model

DOCUMENTS = [
    Document(text="BGE-M3 supports more than 100 languages and inputs of up to 8192 tokens.",
             metadata={"topic": "bge", "year": 2024}, id_="m3-languages"),
    Document(text="BGE-M3 returns dense, sparse and multi-vector (ColBERT) representations.",
             metadata={"topic": "bge", "year": 2024}, id_="m3-outputs"),
    Document(text="The giant panda is a bear species endemic to China.",
             metadata={"topic": "animals", "year": 2019}, id_="panda"),
    Document(text="Reciprocal rank fusion merges rankings by summing 1 / (60 + rank).",
             metadata={"topic": "search", "year": 2009}, id_="rrf"),
]


def main(argv: list[str] | None = None) -> int:
    """Index the documents, retrieve with a filter, answer, then insert and delete."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="BAAI/bge-m3", help="BGE-M3 hub id or directory.")
    parser.add_argument("--tiny", action="store_true",
                        help="use a tiny random BGE-M3-shaped model (offline; rankings are noise)")
    parser.add_argument("--question", default="How many languages does BGE-M3 support?")
    parser.add_argument("--mode", default="hybrid",
                        choices=["hybrid", "dense", "sparse", "colbert"])
    parser.add_argument("--fusion", default="weighted", choices=["weighted", "rrf"])
    parser.add_argument("-k", type=int, default=2, help="chunks retrieved")
    args = parser.parse_args(argv)

    model = tiny_model("xlm-roberta") if args.tiny else args.model
    recent = MetadataFilters(filters=[
        MetadataFilter(key="year", value=2010, operator=FilterOperator.GTE),
        MetadataFilter(key="topic", value="animals", operator=FilterOperator.NE)])
    retriever = BGEM3Retriever.from_documents(
        DOCUMENTS, model_name=model, node_parser=SentenceSplitter(chunk_size=256),
        similarity_top_k=args.k, mode=args.mode, fusion=args.fusion,
        weights=(0.4, 0.2, 0.4), filters=recent)
    for hit in retriever.retrieve(args.question):
        print(f"{hit.score:.4f} [{hit.node.ref_doc_id}] {hit.node.get_content()}")

    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(max_tokens=32))
    response = engine.query(args.question)
    print(f"answer ({len(response.source_nodes)} sources): {response}")

    added = retriever.insert(Document(
        text="BGE-M3 sparse weights work as a learned lexical index.",
        metadata={"topic": "bge", "year": 2024}, id_="m3-sparse"))
    print(f"inserted {added}, index holds {len(retriever.index)} chunks")
    removed = retriever.delete_nodes(added)
    print(f"deleted {removed}, index holds {len(retriever.index)} chunks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
