"""A LlamaIndex query engine whose retrieved nodes are reranked by BGERerank.

``BGEEmbedding`` (bge-small-en-v1.5) retrieves four nodes, ``BGERerank``
(bge-reranker-v2-m3) keeps the best two as the engine's ``node_postprocessors``. The LLM is
LlamaIndex's ``MockLLM`` so the script runs offline; set any LLM for real answers.

Usage:
    python examples/llama_index_rerank.py          # hub models
    python examples/llama_index_rerank.py --tiny   # offline, tiny random models

Needs ``pip install bge-integrations[llama-index]``.
"""

from __future__ import annotations

import argparse

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.llms import MockLLM

from bge_integrations.llama_index import BGEEmbedding, BGERerank
from bge_integrations.offline import tiny_model

FACTS = [
    "The giant panda is a bear native to the mountain forests of central China.",
    "Giant pandas eat bamboo almost exclusively.",
    "Paris is the capital and largest city of France.",
    "The Pacific Ocean is the largest and deepest ocean on Earth.",
]


def main(argv: list[str] | None = None) -> int:
    """Index the facts, query with reranking, print the reranked source nodes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true",
                        help="tiny random models (offline; rankings are noise)")
    parser.add_argument("--question", default="What do giant pandas eat?")
    args = parser.parse_args(argv)

    embedder = tiny_model("bert") if args.tiny else "BAAI/bge-small-en-v1.5"
    reranker = tiny_model("xlm-roberta-reranker") if args.tiny else "BAAI/bge-reranker-v2-m3"
    index = VectorStoreIndex.from_documents([Document(text=t) for t in FACTS],
                                            embed_model=BGEEmbedding(model_name=embedder))
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=4,
                                   node_postprocessors=[BGERerank(model_name=reranker, top_n=2)])
    response = engine.query(args.question)
    for node in response.source_nodes:
        print(f"rerank {node.score:.4f} {node.node.get_content()}")
    print(f"reranked nodes: {len(response.source_nodes)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
