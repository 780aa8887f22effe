"""BGE embedding models as first-class LangChain and LlamaIndex components.

The core (``BGEEmbedder``, ``BGEM3Embedder``, ``HybridIndex``, ``DenseIndex``) has no framework
dependency; the adapters live in ``bge_integrations.langchain`` and
``bge_integrations.llama_index``.
"""

from .core import (
    DEFAULT_MODEL,
    BGEEmbedder,
    BGEM3Embedder,
    BGEReranker,
    Family,
    M3Output,
    ModelNotFoundError,
    ModelSpec,
    Pooling,
    RerankerKind,
    RerankerSpec,
    clear_model_cache,
    get_spec,
    list_models,
    list_rerankers,
    register_model,
    register_reranker,
)
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
    "BGEReranker",
    "RerankerSpec",
    "RerankerKind",
    "register_reranker",
    "list_rerankers",
    "__version__",
]
