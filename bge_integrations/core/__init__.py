"""Model logic: registry, prompts, pooling, the inference engine, dense and BGE-M3 embedders.

The registry and the errors import at once; the embedders (which need torch and
transformers) are imported on first use, so ``import bge_integrations`` stays light.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .registry import (
    DEFAULT_MODEL,
    Family,
    ModelSpec,
    Pooling,
    get_spec,
    list_models,
    register_model,
)
from .rerank_registry import RerankerKind, RerankerSpec, list_rerankers, register_reranker
from .resolve import ModelNotFoundError, UnknownModelError

if TYPE_CHECKING:
    from .embedder import BGEEmbedder
    from .loading import clear_model_cache
    from .m3 import BGEM3Embedder, M3Output
    from .rerank import BGEReranker

__all__ = [
    "DEFAULT_MODEL",
    "BGEEmbedder",
    "BGEM3Embedder",
    "M3Output",
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
]

# public name -> submodule defining it (imported on first use: it imports torch)
__getattr__, __dir__ = lazy_exports(__name__, {
    "BGEEmbedder": "embedder",
    "BGEM3Embedder": "m3",
    "M3Output": "m3",
    "clear_model_cache": "loading",
    "BGEReranker": "rerank",
}, __all__)
