"""LangChain components for BGE models: dense and sparse embeddings, a BGE-M3 hybrid retriever.

Example:
    >>> from bge_integrations.langchain import BGEEmbeddings
    >>> emb = BGEEmbeddings(model_name="BAAI/bge-small-en-v1.5")  # doctest: +SKIP
    >>> len(emb.embed_query("what is BGE?"))  # doctest: +SKIP
    384
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

try:
    import langchain_core  # noqa: F401
except ImportError as exc:
    msg = ("bge_integrations.langchain needs langchain-core, which is not installed; "
           "install it with `pip install bge-integrations[langchain]`.")
    raise ImportError(msg) from exc

if TYPE_CHECKING:
    from .embeddings import BGEEmbeddings
    from .retriever import BGEM3Retriever
    from .sparse import BGEM3SparseEmbeddings

#: public name -> submodule defining it (imported on first use: ``sparse`` pulls in Qdrant)
_MODULES = {
    "BGEEmbeddings": "embeddings",
    "BGEM3SparseEmbeddings": "sparse",
    "BGEM3Retriever": "retriever",
}

__all__ = ["BGEEmbeddings", "BGEM3SparseEmbeddings", "BGEM3Retriever"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        module = importlib.import_module(f".{_MODULES[name]}", __name__)
        return getattr(module, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
