"""Retrieval: the embedded :class:`HybridIndex` (BGE-M3), its Qdrant backend, and
:class:`DenseIndex` (dense-only, any other model).

``QdrantHybridIndex`` needs the ``[qdrant]`` extra; ``qdrant_client`` is imported only when
one is created.
"""

from .contract import DenseEncoder, Hit, M3Encoder, Record, SearchIndex
from .dense import DenseIndex
from .errors import IndexFileError, ModelMismatchError
from .filters import parse_filter
from .fusion import Fusion, RetrievalMode
from .index import HybridIndex
from .qdrant import QdrantHybridIndex

__all__ = [
    "HybridIndex",
    "DenseIndex",
    "QdrantHybridIndex",
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
