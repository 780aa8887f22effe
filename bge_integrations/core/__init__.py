"""Model logic: registry, prompts, pooling, the inference engine, dense and BGE-M3 embedders."""

from .embedder import DEFAULT_MODEL, BGEEmbedder
from .loading import clear_model_cache
from .m3 import BGEM3Embedder, M3Output
from .registry import Family, ModelSpec, Pooling, get_spec, list_models, register_model
from .rerank import BGEReranker
from .rerank_registry import RerankerKind, RerankerSpec, list_rerankers, register_reranker
from .resolve import ModelNotFoundError

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
    "BGEReranker",
    "RerankerSpec",
    "RerankerKind",
    "register_reranker",
    "list_rerankers",
]
