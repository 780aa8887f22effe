"""Hybrid retrieval over BGE-M3: the embedded :class:`HybridIndex` and the Qdrant backend.

``QdrantHybridIndex`` needs the ``[qdrant]`` extra; ``qdrant_client`` is imported only when
one is created.
"""

from .contract import Hit, Record
from .filters import parse_filter
from .fusion import Fusion, RetrievalMode
from .index import HybridIndex
from .persistence import IndexFileError, ModelMismatchError
from .qdrant import QdrantHybridIndex

__all__ = [
    "HybridIndex",
    "QdrantHybridIndex",
    "Hit",
    "Record",
    "RetrievalMode",
    "Fusion",
    "parse_filter",
    "IndexFileError",
    "ModelMismatchError",
]
