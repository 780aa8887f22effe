"""LlamaIndex components for BGE models: dense and sparse embeddings, a BGE-M3 hybrid retriever.

Example:
    >>> from llama_index.core import Settings
    >>> from bge_integrations.llama_index import BGEEmbedding
    >>> Settings.embed_model = BGEEmbedding(model_name="BAAI/bge-small-en-v1.5")  # doctest: +SKIP
    >>> len(Settings.embed_model.get_query_embedding("what is BGE?"))  # doctest: +SKIP
    384
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:
    msg = ("bge_integrations.llama_index needs llama-index-core, which is not installed; "
           "install it with `pip install bge-integrations[llama-index]`.")
    raise ImportError(msg) from exc

if TYPE_CHECKING:
    from .embedding import BGEEmbedding
    from .retriever import BGEM3Retriever
    from .sparse import BGEM3SparseEmbedding

#: public name -> submodule defining it (imported on first use)
_MODULES = {
    "BGEEmbedding": "embedding",
    "BGEM3SparseEmbedding": "sparse",
    "BGEM3Retriever": "retriever",
}

__all__ = ["BGEEmbedding", "BGEM3SparseEmbedding", "BGEM3Retriever"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        module = importlib.import_module(f".{_MODULES[name]}", __name__)
        return getattr(module, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
