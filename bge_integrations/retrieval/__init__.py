"""Retrieval: the embedded :class:`HybridIndex` (BGE-M3) and :class:`DenseIndex` (dense-only,
any other model), their Qdrant backends, and :func:`copy_index` between them.

``QdrantHybridIndex`` and ``QdrantDenseIndex`` need the ``[qdrant]`` extra; ``qdrant_client``
is imported only when one is created.
"""

from .contract import DenseEncoder, EmbeddingBatch, Hit, M3Encoder, Record, SearchIndex
from .dense import DenseIndex
from .errors import IndexFileError, ModelMismatchError
from .filters import parse_filter
from .fusion import Fusion, RetrievalMode
from .index import HybridIndex
from .qdrant import QdrantDenseIndex, QdrantHybridIndex
from .transfer import copy_index

__all__ = [
    "HybridIndex",
    "DenseIndex",
    "QdrantHybridIndex",
    "QdrantDenseIndex",
    "copy_index",
    "EmbeddingBatch",
    "SearchIndex",
    "DenseEncoder",
    "M3Encoder",
    "Hit",
    "Record",
    "RetrievalMode",
    "Fusion",
    "parse_filter",
    "IndexFileError",
    "ModelMismatchError",
]
