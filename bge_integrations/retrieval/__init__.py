"""Retrieval: the embedded :class:`HybridIndex` (BGE-M3), its Qdrant backend, and
:class:`DenseIndex` (dense-only, any other model).

``QdrantHybridIndex`` needs the ``[qdrant]`` extra; ``qdrant_client`` is imported only when
one is created.
"""

from .contract import Hit, Record
from .dense import DenseIndex
from .filters import parse_filter
from .fusion import Fusion, RetrievalMode
from .index import HybridIndex
from .persistence import IndexFileError, ModelMismatchError
from .qdrant import QdrantHybridIndex

__all__ = [
    "HybridIndex",
    "DenseIndex",
    "QdrantHybridIndex",
    "Hit",
    "Record",
    "RetrievalMode",
    "Fusion",
    "parse_filter",
    "IndexFileError",
    "ModelMismatchError",
]
