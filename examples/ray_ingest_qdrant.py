"""Ingest a corpus with Ray Data into Qdrant, then search it hybrid, from a laptop.

A local Ray cluster embeds the bundled corpus (40 paragraphs) with BGE-M3 in an actor that
holds the model (dense + sparse + ColBERT outputs as new columns); ``write_qdrant`` upserts
the rows into an in-process Qdrant collection with ids derived from the ``id`` column; then
``QdrantHybridIndex`` and the LangChain ``BGEM3Retriever`` search that collection. On a real
cluster only the ``ray.init`` address, ``concurrency`` / ``num_gpus`` and the Qdrant ``url``
change (see docs/distributed.md).

Usage:
    python examples/ray_ingest_qdrant.py                # BAAI/bge-m3 from the hub
    python examples/ray_ingest_qdrant.py --tiny         # offline, tiny random model

Needs ``pip install bge-integrations[ray,qdrant,langchain]``.
"""

from __future__ import annotations

import argparse
from importlib.resources import files

import ray
from qdrant_client import QdrantClient

from bge_integrations import BGEM3Embedder
from bge_integrations.distributed import embed_dataset, write_qdrant
from bge_integrations.langchain import BGEM3Retriever
from bge_integrations.offline import tiny_model
from bge_integrations.retrieval import QdrantHybridIndex

CORPUS = str(files("bge_integrations") / "data" / "corpus.jsonl")


def main(argv: list[str] | None = None) -> int:
    """Embed the corpus on Ray, load it into Qdrant and answer one query two ways."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="BAAI/bge-m3", help="BGE-M3 hub id or directory.")
    parser.add_argument("--tiny", action="store_true",
                        help="use a tiny random BGE-M3-shaped model (offline; rankings are noise)")
    parser.add_argument("--query", default="How does sparse lexical retrieval work?")
    parser.add_argument("--workers", type=int, default=1, help="embedding actors")
    args = parser.parse_args(argv)
    model = tiny_model("xlm-roberta") if args.tiny else args.model

    # logical CPUs: the actors plus Ray Data's own read tasks must all fit
    ray.init(num_cpus=2 * args.workers + 2, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        ds = ray.data.read_json(CORPUS)  # columns: id, text, topic
        embedded = embed_dataset(ds, model, colbert=True, concurrency=args.workers,
                                 batch_size=16)
        client = QdrantClient(location=":memory:")
        summary = write_qdrant(embedded, "corpus", model=model, client=client)
    finally:
        ray.shutdown()
    print(f"ingested {summary.rows} rows into Qdrant collection 'corpus' "
          f"({client.count('corpus').count} points)")

    index = QdrantHybridIndex(BGEM3Embedder(model), collection_name="corpus", client=client)
    print(f"query: {args.query}")
    for hit in index.search(args.query, k=3, mode="hybrid"):
        print(f"  hybrid {hit.score:.4f}  [{hit.id}, {hit.metadata['topic']}]  {hit.text[:60]}")
    retriever = BGEM3Retriever(index=index, k=2, filter={"topic": "sparse"})
    for doc in retriever.invoke(args.query):
        print(f"  langchain (topic=sparse) [{doc.id}]  {doc.page_content[:60]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
