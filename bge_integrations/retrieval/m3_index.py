"""What both BGE-M3 indexes (``HybridIndex`` and ``QdrantHybridIndex``) share: the embedder,
the modes they serve, and one-query search on top of their ``search_many``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core.scores import DEFAULT_WEIGHTS
from .contract import Hit, M3Encoder, NotPicklable, single_query
from .fusion import Fusion, RetrievalMode
from .rerank_step import search_reranked

if TYPE_CHECKING:
    from ..core.rerank import BGEReranker

__all__ = ["M3Index"]


class M3Index(NotPicklable):
    """Base of the BGE-M3 indexes; subclasses set ``_m3`` and ``store_colbert`` and define
    ``search_many(queries, k, filter, mode, weights, fusion)``."""

    _m3: M3Encoder
    store_colbert: bool

    @property
    def embedder(self) -> M3Encoder:
        """The embedder that encodes documents and queries."""
        return self._m3

    @property
    def m3(self) -> M3Encoder:
        """The embedder (the same object as :attr:`embedder`)."""
        return self._m3

    @property
    def modes(self) -> tuple[RetrievalMode, ...]:
        """The rankings ``search`` accepts as ``mode`` (ColBERT ones only with stored vectors)."""
        return tuple(m for m in RetrievalMode
                     if self.store_colbert or m is not RetrievalMode.COLBERT)

    def search(self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None,
               mode: str | RetrievalMode = RetrievalMode.HYBRID,
               weights: Sequence[float] = DEFAULT_WEIGHTS,
               fusion: str | Fusion = Fusion.WEIGHTED, rerank: BGEReranker | None = None,
               candidates: int = 50) -> list[Hit]:
        """The ``k`` best documents for one query.

        Args:
            query: the query text.
            k: how many hits at most (exactly ``k`` when ``k`` documents match the filter;
                ``sparse`` mode also needs a shared token).
            filter: a metadata filter (see :mod:`bge_integrations.retrieval.filters`).
            mode: ``"hybrid"``, ``"dense"``, ``"sparse"`` or ``"colbert"``.
            weights: (dense, sparse, colbert) weights of ``hybrid`` mode.
            fusion: ``"weighted"`` (score fusion) or ``"rrf"`` (reciprocal rank fusion).
            rerank: a ``BGEReranker`` that reorders the best ``candidates`` documents
                (:mod:`.rerank_step`); their ``scores["rerank"]`` is its score.
            candidates: how many documents the reranker sees.

        Returns:
            Hits, best first.

        Example:
            >>> hits = index.search("France", k=2, filter={"lang": "en"})  # doctest: +SKIP
            >>> sorted(hits[0].scores)  # doctest: +SKIP
            ['colbert', 'dense', 'sparse']
        """
        return search_reranked(query, k, rerank, candidates, lambda n: self.search_many(
            single_query(query), k=n, filter=filter, mode=mode, weights=weights,
            fusion=fusion)[0])
