"""LlamaIndex components for BGE models: dense and sparse embeddings, a BGE-M3 hybrid retriever.

Example:
    >>> from llama_index.core import Settings
    >>> from bge_integrations.llama_index import BGEEmbedding
    >>> Settings.embed_model = BGEEmbedding(model_name="BAAI/bge-small-en-v1.5")  # doctest: +SKIP
    >>> len(Settings.embed_model.get_query_embedding("what is BGE?"))  # doctest: +SKIP
    384
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports, require

require("llama_index.core", package="llama-index-core", extra="llama-index", user=__name__)

if TYPE_CHECKING:
    from .embedding import BGEEmbedding
    from .rerank import BGERerank
    from .retriever import BGEM3Retriever
    from .sparse import BGEM3SparseEmbedding

__all__ = ["BGEEmbedding", "BGEM3SparseEmbedding", "BGEM3Retriever", "BGERerank"]

# public name -> submodule defining it (imported on first use)
__getattr__, __dir__ = lazy_exports(__name__, {
    "BGEEmbedding": "embedding",
    "BGEM3SparseEmbedding": "sparse",
    "BGEM3Retriever": "retriever",
    "BGERerank": "rerank",
}, __all__)
