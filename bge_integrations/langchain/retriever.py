"""BGEM3Retriever: LangChain retrieval over a BGE-M3 hybrid index (dense + sparse + ColBERT)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, model_validator

from ..adapter_options import M3Options
from ..core.rerank import BGEReranker
from ..core.scores import DEFAULT_WEIGHTS
from ..retrieval import Fusion, HybridIndex, QdrantHybridIndex, RetrievalMode
from ..retrieval.contract import SearchRequest
from ..retrieval.rerank_step import check_rerank

__all__ = ["BGEM3Retriever"]

#: metadata key of a returned Document holding the score that ranked it
SCORE_KEY = "score"
#: metadata key holding the per-mode scores behind it (``dense``, ``sparse``, ``colbert``)
SCORES_KEY = "scores"


class BGEM3Retriever(BaseRetriever):
    """Hybrid BGE-M3 retrieval: dense, sparse (lexical) and ColBERT scores, fused.

    It searches a ``HybridIndex`` (embedded, in process) or a ``QdrantHybridIndex`` (a Qdrant
    collection); both rank by the same formulas. Each returned ``Document`` carries the
    index's id, the stored metadata, and two extra metadata keys: ``"score"`` (the score that
    ranked it; the fused score in ``hybrid`` mode) and ``"scores"`` (the per-mode scores, e.g.
    ``{"dense": ..., "sparse": ..., "colbert": ...}``). ``k``, ``mode``, ``weights``,
    ``fusion`` and ``filter`` can be overridden per call (``None`` keeps the field):
    ``retriever.invoke(query, k=2, mode="sparse")``. Settings are checked at construction
    against what the index stores.

    Example:
        >>> from bge_integrations.langchain import BGEM3Retriever
        >>> retriever = BGEM3Retriever.from_texts(  # doctest: +SKIP
        ...     ["BGE-M3 is multilingual.", "Paris is in France."],
        ...     metadatas=[{"topic": "ml"}, {"topic": "geo"}], k=1)
        >>> doc = retriever.invoke("Which model speaks many languages?")[0]  # doctest: +SKIP
        >>> sorted(doc.metadata["scores"])  # doctest: +SKIP
        ['colbert', 'dense', 'sparse']
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    index: HybridIndex | QdrantHybridIndex
    """The BGE-M3 index searched (it holds the model): embedded, or on a Qdrant collection."""
    k: int = Field(default=4, gt=0)
    """Number of documents returned."""
    mode: RetrievalMode = RetrievalMode.HYBRID
    """``"hybrid"``, ``"dense"``, ``"sparse"`` or ``"colbert"``."""
    weights: tuple[float, float, float] = DEFAULT_WEIGHTS
    """(dense, sparse, colbert) weights of ``hybrid`` mode."""
    fusion: Fusion = Fusion.WEIGHTED
    """``"weighted"`` (score fusion, FlagEmbedding's formula) or ``"rrf"`` (rank fusion)."""
    filter: dict[str, Any] | None = None
    """Metadata filter, e.g. ``{"lang": "en", "year": {"$gte": 2020}}``."""
    rerank: BGEReranker | None = None
    """A reranker that reorders the best ``candidates`` documents (``scores["rerank"]``)."""
    candidates: int = Field(default=50, gt=0)
    """How many documents the reranker sees."""

    @model_validator(mode="after")
    def _check_search_settings(self) -> BGEM3Retriever:
        settings = self._settings({})
        check_rerank(settings.pop("rerank"), settings.pop("candidates"))
        SearchRequest.build([], has_colbert=self.index.store_colbert, **settings)
        return self

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: Sequence[str], model_name: str = "BAAI/bge-m3",
                   metadatas: Sequence[Mapping[str, Any] | None] | None = None,
                   ids: Sequence[str] | None = None, **kwargs: Any) -> BGEM3Retriever:
        """Load BGE-M3, index ``texts`` in a new ``HybridIndex`` and return a retriever on it.

        Args:
            texts: the documents.
            model_name: hub id or local directory of a BGE-M3 checkpoint.
            metadatas: one dict (or None) per text.
            ids: one distinct id per text (default: fresh ids).
            **kwargs: core options (``device``, ``dtype``, ``batch_size``, ...) and retriever
                fields (``k``, ``mode``, ``weights``, ``fusion``, ``filter``).

        Returns:
            The retriever.
        """
        retriever = cls._on_new_index(model_name, kwargs)
        retriever.add_texts(texts, metadatas=metadatas, ids=ids)
        return retriever

    @classmethod
    def from_documents(cls, documents: Sequence[Document], model_name: str = "BAAI/bge-m3",
                       ids: Sequence[str] | None = None, **kwargs: Any) -> BGEM3Retriever:
        """Like :meth:`from_texts`, from LangChain ``Document``s (their ids are kept)."""
        retriever = cls._on_new_index(model_name, kwargs)
        retriever.add_documents(documents, ids=ids)
        return retriever

    @classmethod
    def _on_new_index(cls, model_name: str, kwargs: dict[str, Any]) -> BGEM3Retriever:
        """A retriever on an empty index; ``kwargs`` are core options and retriever fields."""
        options = {key: kwargs.pop(key) for key in list(kwargs) if key in M3Options.model_fields}
        return cls(index=HybridIndex(M3Options(**options).build_m3(model_name)), **kwargs)

    def add_texts(self, texts: Sequence[str],
                  metadatas: Sequence[Mapping[str, Any] | None] | None = None,
                  ids: Sequence[str] | None = None) -> list[str]:
        """Index texts; an existing id is replaced.

        Invalid input is rejected before anything changes. On a ``HybridIndex`` a failing call
        changes nothing; a Qdrant add that fails midway can be re-run with the same ids.

        Returns:
            The ids, in input order.
        """
        return self.index.add(texts, metadatas=metadatas, ids=ids)

    def add_documents(self, documents: Sequence[Document],
                      ids: Sequence[str] | None = None) -> list[str]:
        """Index ``Document``s under ``ids``, else their own ids (fresh ones where unset).

        Returns:
            The ids, in input order.
        """
        if isinstance(documents, Document):
            msg = "documents must be a list of Documents, got a single one; wrap it in a list."
            raise TypeError(msg)
        docs = list(documents)
        for i, doc in enumerate(docs):
            if not isinstance(doc, Document):
                msg = f"documents[{i}] must be a langchain_core Document, got {type(doc).__name__}."
                raise TypeError(msg)
        if ids is None:
            ids = [doc.id or uuid.uuid4().hex for doc in docs]
        return self.add_texts([doc.page_content for doc in docs],
                              metadatas=[doc.metadata for doc in docs], ids=ids)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id (unknown ids are ignored); returns how many were removed."""
        return self.index.delete(ids)

    # -- searching ---------------------------------------------------------------------------
    def _settings(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The search settings: the fields, with the per-call values that are not None."""
        settings = {"k": self.k, "filter": self.filter, "mode": self.mode,
                    "weights": self.weights, "fusion": self.fusion, "rerank": self.rerank,
                    "candidates": self.candidates}
        settings.update((key, value) for key, value in overrides.items() if value is not None)
        return settings

    def _search(self, query: str, overrides: dict[str, Any]) -> list[Document]:
        hits = self.index.search(query, **self._settings(overrides))
        return [Document(page_content=hit.text, id=hit.id,
                         metadata={**hit.metadata, SCORE_KEY: hit.score, SCORES_KEY: hit.scores})
                for hit in hits]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None,
        mode: str | None = None, weights: Sequence[float] | None = None,
        fusion: str | None = None, filter: dict[str, Any] | None = None,
    ) -> list[Document]:
        return self._search(query, {"k": k, "mode": mode, "weights": weights,
                                    "fusion": fusion, "filter": filter})

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None, mode: str | None = None, weights: Sequence[float] | None = None,
        fusion: str | None = None, filter: dict[str, Any] | None = None,
    ) -> list[Document]:
        return await asyncio.to_thread(self._search, query, {
            "k": k, "mode": mode, "weights": weights, "fusion": fusion, "filter": filter})
