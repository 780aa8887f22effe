"""Ray Data ingestion: embed datasets on a cluster and load them into Qdrant or an index.

Requires the ``[ray]`` extra (``pip install 'bge-integrations[ray]'``); Ray is imported when a
function runs, never by ``import bge_integrations``.

Example:
    >>> import ray
    >>> from bge_integrations.distributed import embed_dataset, write_qdrant
    >>> ds = ray.data.read_json("docs.jsonl")  # doctest: +SKIP
    >>> ds = embed_dataset(ds, "BAAI/bge-m3", concurrency=4)  # doctest: +SKIP
    >>> write_qdrant(ds, "docs", model="BAAI/bge-m3", url="http://localhost:6333")  # doctest: +SKIP
"""

from .columns import (
    COLBERT,
    EMBEDDING,
    ERROR,
    NUM_TOKENS,
    SPARSE_INDICES,
    SPARSE_VALUES,
    colbert_arrays,
    dense_matrix,
    sparse_dicts,
)
from .embed import embed_dataset
from .index_sink import write_index
from .qdrant_sink import WriteSummary, write_qdrant
from .rerank import rerank_dataset

__all__ = [
    "embed_dataset",
    "rerank_dataset",
    "write_qdrant",
    "write_index",
    "WriteSummary",
    "EMBEDDING",
    "SPARSE_INDICES",
    "SPARSE_VALUES",
    "COLBERT",
    "NUM_TOKENS",
    "ERROR",
    "dense_matrix",
    "sparse_dicts",
    "colbert_arrays",
]
