"""``BGEM3SparseEmbedding``: BGE-M3 lexical weights as a LlamaIndex ``BaseSparseEmbedding``."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base_sparse import BaseSparseEmbedding, SparseEmbedding
from llama_index.core.bridge.pydantic import ConfigDict, Field

from ..adapter_options import M3Options
from ..core.inputs import validate_texts
from ..core.m3 import BGEM3Embedder

__all__ = ["BGEM3SparseEmbedding"]

#: ``(indices, values)`` per text: what Qdrant's ``sparse_doc_fn`` / ``sparse_query_fn`` return
BatchSparseEncoding = tuple[list[list[int]], list[list[float]]]


class BGEM3SparseEmbedding(M3Options, BaseSparseEmbedding):
    """BGE-M3 sparse (lexical) vectors: ``{token id: weight}`` with weights > 0.

    BGE-M3 uses no query instruction, so queries and documents differ only in their token
    limits (``query_max_length`` / ``passage_max_length``). :meth:`sparse_doc_fn` and
    :meth:`sparse_query_fn` plug into LlamaIndex's ``QdrantVectorStore`` for hybrid search.

    Example:
        >>> from qdrant_client import QdrantClient  # doctest: +SKIP
        >>> from llama_index.vector_stores.qdrant import QdrantVectorStore  # doctest: +SKIP
        >>> sparse = BGEM3SparseEmbedding(model_name="BAAI/bge-m3")  # doctest: +SKIP
        >>> store = QdrantVectorStore(  # doctest: +SKIP
        ...     "docs", client=QdrantClient(":memory:"), enable_hybrid=True,
        ...     sparse_doc_fn=sparse.sparse_doc_fn, sparse_query_fn=sparse.sparse_query_fn)
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=("pydantic_model_",))

    model_name: str = Field(default="BAAI/bge-m3",
                            description="Hub id or local directory of a BGE-M3 checkpoint.")

    def __init__(self, **data: Any) -> None:
        """Validate the options and load (or reuse) the model and its sparse head.

        Args:
            **data: ``model_name``, the BGE-M3 core options and ``BaseSparseEmbedding``'s
                fields.
        """
        super().__init__(**data)
        self._core = self._new_core()

    def _new_core(self) -> BGEM3Embedder:
        return self.build_sparse(self.model_name)

    @classmethod
    def class_name(cls) -> str:
        """Name used by LlamaIndex serialization."""
        return "BGEM3SparseEmbedding"

    @property
    def embedder(self) -> BGEM3Embedder:
        """The core BGE-M3 embedder doing the work."""
        return self._core

    def get_text_embedding_batch(self, texts: list[str], show_progress: bool = False,
                                 **kwargs: Any) -> list[SparseEmbedding]:
        """Embed documents ``embed_batch_size`` at a time; the whole input is checked first
        (types, and ``max_texts_per_call`` against the whole call, not each chunk)."""
        return super().get_text_embedding_batch(
            self._checked(texts), show_progress=show_progress, **kwargs)

    async def aget_text_embedding_batch(self, texts: list[str], show_progress: bool = False
                                        ) -> list[SparseEmbedding]:
        """Async :meth:`get_text_embedding_batch`; each chunk runs in a worker thread."""
        return await super().aget_text_embedding_batch(
            self._checked(texts), show_progress=show_progress)

    def sparse_doc_fn(self, texts: list[str]) -> BatchSparseEncoding:
        """Documents as ``(indices, values)`` lists: Qdrant's ``sparse_doc_fn``."""
        return _to_indices_values(self.get_text_embedding_batch(texts))

    def sparse_query_fn(self, texts: list[str]) -> BatchSparseEncoding:
        """Queries as ``(indices, values)`` lists: Qdrant's ``sparse_query_fn``."""
        texts = validate_texts(texts, name="queries")
        return _to_indices_values([self.get_query_embedding(text) for text in texts])

    def _get_query_embedding(self, query: str) -> SparseEmbedding:
        return self.embedder.encode_queries([query], dense=False, sparse=True).sparse[0]

    def _get_text_embedding(self, text: str) -> SparseEmbedding:
        return self.embedder.encode_documents([text], dense=False, sparse=True).sparse[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[SparseEmbedding]:
        return self.embedder.encode_documents(texts, dense=False, sparse=True).sparse

    async def _aget_query_embedding(self, query: str) -> SparseEmbedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> SparseEmbedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[SparseEmbedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


def _to_indices_values(vectors: list[SparseEmbedding]) -> BatchSparseEncoding:
    return [list(v) for v in vectors], [list(v.values()) for v in vectors]
