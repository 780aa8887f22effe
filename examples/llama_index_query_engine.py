"""A LlamaIndex RAG pipeline on BGE embeddings: split, embed, index, retrieve, answer.

``BGEEmbedding`` becomes LlamaIndex's global embed model; an ``IngestionPipeline`` splits the
documents and embeds the chunks; a ``VectorStoreIndex`` over those nodes answers through a
query engine. The LLM is llama-index-core's ``MockLLM`` (it returns placeholder text), so the
script runs offline; set ``Settings.llm`` to any LlamaIndex LLM for real answers.

Usage:
    python examples/llama_index_query_engine.py              # BAAI/bge-small-en-v1.5
    python examples/llama_index_query_engine.py --tiny       # offline, tiny random model

Needs ``pip install bge-integrations[llama-index]``.
"""

from __future__ import annotations

import argparse

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter

from bge_integrations.llama_index import BGEEmbedding
from bge_integrations.offline import tiny_model

DOCUMENTS = [
    Document(text="BGE (BAAI General Embedding) models map text to vectors for retrieval.\n\n\n"
                  "English BGE v1.5 models prepend an instruction to queries, never to passages.",
             metadata={"topic": "bge"}),
    Document(text="The giant panda is a bear species endemic to China.\n\n\n"
                  "Pandas eat bamboo almost exclusively.",
             metadata={"topic": "animals"}),
    Document(text="LlamaIndex builds retrieval augmented generation pipelines.\n\n\n"
                  "An IngestionPipeline runs transformations such as splitters and embedders.",
             metadata={"topic": "software"}),
]


def main(argv: list[str] | None = None) -> int:
    """Ingest the documents, then retrieve for and answer one question."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="BAAI/bge-small-en-v1.5",
                        help="BGE model hub id or directory.")
    parser.add_argument("--tiny", action="store_true",
                        help="use a tiny random BGE-shaped model (offline; rankings are noise)")
    parser.add_argument("--question", default="What do pandas eat?")
    parser.add_argument("-k", type=int, default=2, help="chunks given to the LLM")
    args = parser.parse_args(argv)

    model = tiny_model("bert") if args.tiny else args.model
    Settings.embed_model = BGEEmbedding(model_name=model, embed_batch_size=32)
    Settings.llm = MockLLM(max_tokens=32)

    pipeline = IngestionPipeline(transformations=[
        SentenceSplitter(chunk_size=64, chunk_overlap=0), Settings.embed_model])
    nodes = pipeline.run(documents=DOCUMENTS)
    print(f"{len(nodes)} chunks of {len(nodes[0].embedding)}-d vectors")

    index = VectorStoreIndex(nodes)
    for hit in index.as_retriever(similarity_top_k=args.k).retrieve(args.question):
        text = " ".join(hit.node.get_content().split())
        print(f"{hit.score:.4f} [{hit.node.metadata['topic']}] {text}")
    response = index.as_query_engine(similarity_top_k=args.k).query(args.question)
    print(f"answer ({len(response.source_nodes)} sources): {response}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
