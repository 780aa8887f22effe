"""BGEM3SparseEmbeddings: BGE-M3 lexical weights as sparse vectors for LangChain stores.

With ``langchain-qdrant`` installed the class implements its ``SparseEmbeddings`` interface, so
``QdrantVectorStore(..., retrieval_mode=RetrievalMode.HYBRID, sparse_embedding=...)`` takes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..adapter_options import M3Options
from ..core.m3 import BGEM3Embedder, M3Output

try:
    from langchain_qdrant import SparseEmbeddings, SparseVector
except ImportError:

    class SparseEmbeddings:  # type: ignore[no-redef]
        """Base used when langchain-qdrant is absent (``pip install langchain-qdrant``)."""

    class SparseVector(BaseModel, extra="forbid"):  # type: ignore[no-redef]
        """A sparse vector: sorted unique token ids and their weights."""

        indices: list[int]
        values: list[float]


__all__ = ["BGEM3SparseEmbeddings", "SparseVector"]


class BGEM3SparseEmbeddings(M3Options, SparseEmbeddings):
    """Sparse (lexical) BGE-M3 vectors: token id -> weight, weights > 0 only.

    Weights are ``relu(sparse_linear(h))`` per token with special tokens dropped and the max
    over repeated tokens, as in FlagEmbedding. Indices are sorted and unique. Pair it with
    ``BGEEmbeddings(model_name="BAAI/bge-m3")`` for the dense side: both share one copy of the
    weights.

    Example:
        >>> from bge_integrations.langchain import BGEM3SparseEmbeddings
        >>> sparse = BGEM3SparseEmbeddings(model_name="BAAI/bge-m3")  # doctest: +SKIP
        >>> vec = sparse.embed_query("what is BGE-M3?")  # doctest: +SKIP
        >>> len(vec.indices) == len(vec.values)  # doctest: +SKIP
        True
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    model_name: str = Field(default="BAAI/bge-m3", alias="model")
    """Hub id or local directory of a BGE-M3 checkpoint (with ``sparse_linear.pt``)."""

    def __init__(self, **kwargs: Any) -> None:
        """Validate the options and load the model (or reuse it from the model cache)."""
        super().__init__(**kwargs)
        self._core = self._new_core()

    def _new_core(self) -> BGEM3Embedder:
        return self.build_sparse(self.model_name)

    @property
    def embedder(self) -> BGEM3Embedder:
        """The core BGE-M3 embedder doing the work."""
        return self._core

    def embed_documents(self, texts: list[str]) -> list[SparseVector]:
        """Sparse vectors of passages.

        Args:
            texts: the documents to embed.

        Returns:
            One ``SparseVector`` (indices, values) per document.
        """
        return _vectors(self.embedder.encode_documents(texts, dense=False, sparse=True))

    def embed_query(self, text: str) -> SparseVector:
        """Sparse vector of a search query.

        Args:
            text: the query.

        Returns:
            The query's ``SparseVector``.
        """
        return _vectors(self.embedder.encode_queries([text], dense=False, sparse=True))[0]

    async def aembed_documents(self, texts: list[str]) -> list[SparseVector]:
        """Sparse vectors of passages, computed in a worker thread."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> SparseVector:
        """Sparse vector of a query, computed in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)


def _vectors(output: M3Output) -> list[SparseVector]:
    return [SparseVector(indices=indices.tolist(), values=values.tolist())
            for indices, values in output.sparse_arrays()]
