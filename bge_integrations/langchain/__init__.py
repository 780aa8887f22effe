"""LangChain components for BGE models: dense and sparse embeddings, a BGE-M3 hybrid retriever.

Example:
    >>> from bge_integrations.langchain import BGEEmbeddings
    >>> emb = BGEEmbeddings(model_name="BAAI/bge-small-en-v1.5")  # doctest: +SKIP
    >>> len(emb.embed_query("what is BGE?"))  # doctest: +SKIP
    384
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports, require

require("langchain_core", package="langchain-core", extra="langchain", user=__name__)

if TYPE_CHECKING:
    from .embeddings import BGEEmbeddings
    from .rerank import BGERerank
    from .retriever import BGEM3Retriever
    from .sparse import BGEM3SparseEmbeddings

__all__ = ["BGEEmbeddings", "BGEM3SparseEmbeddings", "BGEM3Retriever", "BGERerank"]

# public name -> submodule defining it (imported on first use: ``sparse`` pulls in Qdrant)
__getattr__, __dir__ = lazy_exports(__name__, {
    "BGEEmbeddings": "embeddings",
    "BGEM3SparseEmbeddings": "sparse",
    "BGEM3Retriever": "retriever",
    "BGERerank": "rerank",
}, __all__)
