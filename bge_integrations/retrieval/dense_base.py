"""What both dense indexes (``DenseIndex`` and ``QdrantDenseIndex``) share: the embedder check,
the one mode they serve, the request check and one-query search on top of their
``search_many``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .contract import DenseEncoder, Hit, NotPicklable, SearchRequest, require_dense, single_query
from .fusion import RetrievalMode, coerce_mode
from .rerank_step import search_reranked

if TYPE_CHECKING:
    from ..core.rerank import BGEReranker

__all__ = ["DenseBase"]


class DenseBase(NotPicklable):
    """Base of the dense indexes; subclasses call :meth:`_use_embedder` and define
    ``search_many(queries, k, filter, mode)`` on :meth:`_request`."""

    #: the only ranking these indexes have
    modes = (RetrievalMode.DENSE,)
    _embedder: DenseEncoder
    _dim: int

    def _use_embedder(self, embedder: object) -> None:
        """Keep ``embedder`` (a ``TypeError`` unless it is a dense embedder) and its dim."""
        self._embedder = require_dense(embedder, type(self).__name__)
        self._dim = int(self._embedder.dim)

    @property
    def embedder(self) -> DenseEncoder:
        """The embedder that encodes documents and queries."""
        return self._embedder

    def _request(self, queries: object, k: int, filter: Mapping[str, Any] | None,
                 mode: str | RetrievalMode) -> SearchRequest:
        """The checked arguments of ``search_many``; ``mode`` must be ``dense``."""
        if coerce_mode(mode) is not RetrievalMode.DENSE:
            msg = (f"{type(self).__name__} ranks by dense scores only (mode='dense'), got "
                   f"mode={mode!r}; sparse, ColBERT and hybrid search need a BGE-M3 "
                   "HybridIndex.")
            raise ValueError(msg)
        return SearchRequest.build(queries, k=k, filter=filter, mode=RetrievalMode.DENSE,
                                   has_colbert=False)

    def search(self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None,
               mode: str | RetrievalMode = RetrievalMode.DENSE,
               rerank: BGEReranker | None = None, candidates: int = 50) -> list[Hit]:
        """The ``k`` documents whose vectors have the largest inner product with the query's.

        Args:
            query: the search text (the model's query instruction is applied).
            k: how many hits at most.
            filter: metadata filter, as for ``HybridIndex.search`` (e.g. ``{"lang": "en"}``,
                ``{"year": {"$gte": 2020}}``); it is applied before the top k are taken.
            mode: ``"dense"``, the only mode of this index (see :attr:`modes`).
            rerank: a ``BGEReranker`` that reorders the best ``candidates`` documents.
            candidates: how many documents the reranker sees.

        Returns:
            Hits, best first; ``hit.scores`` is ``{"dense": ...}`` (and ``"rerank"``).

        Example:
            >>> index.search("what do pandas eat?", k=1)[0].id  # doctest: +SKIP
            'panda'
        """
        return search_reranked(query, k, rerank, candidates, lambda n: self.search_many(
            single_query(query), k=n, filter=filter, mode=mode)[0])

