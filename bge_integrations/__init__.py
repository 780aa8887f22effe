"""BGE embedding models as first-class LangChain and LlamaIndex components.

The core (``BGEEmbedder``, ``BGEM3Embedder``, ``HybridIndex``, ``DenseIndex``) has no framework
dependency; the adapters live in ``bge_integrations.langchain`` and
``bge_integrations.llama_index``. Importing the package does not import torch or
transformers: the model classes load them on first use.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from .core import (
    DEFAULT_MODEL,
    Family,
    ModelNotFoundError,
    ModelSpec,
    Pooling,
    RerankerKind,
    RerankerSpec,
    UnknownModelError,
    get_spec,
    list_models,
    list_rerankers,
    register_model,
    register_reranker,
)

if TYPE_CHECKING:
    from .core import BGEEmbedder, BGEM3Embedder, BGEReranker, M3Output, clear_model_cache
    from .retrieval import DenseIndex, Hit, HybridIndex

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "BGEEmbedder",
    "BGEM3Embedder",
    "M3Output",
    "HybridIndex",
    "DenseIndex",
    "Hit",
    "ModelSpec",
    "Family",
    "Pooling",
    "register_model",
    "get_spec",
    "list_models",
    "clear_model_cache",
    "ModelNotFoundError",
    "UnknownModelError",
    "BGEReranker",
    "RerankerSpec",
    "RerankerKind",
    "register_reranker",
    "list_rerankers",
    "__version__",
]

# torch and transformers load on first use of a model class, not on `import bge_integrations`
__getattr__, __dir__ = lazy_exports(__name__, {
    "BGEEmbedder": "core",
    "BGEM3Embedder": "core",
    "M3Output": "core",
    "clear_model_cache": "core",
    "BGEReranker": "core",
    "HybridIndex": "retrieval",
    "DenseIndex": "retrieval",
    "Hit": "retrieval",
}, __all__)
