"""The second stage of a search: retrieve candidates, rerank them, keep the best ``k``.

``HybridIndex``, ``QdrantHybridIndex`` and ``DenseIndex`` take ``rerank=BGEReranker(...)`` and
``candidates=50`` in ``search``: the index's own ranking picks ``max(candidates, k)``
documents, the reranker scores each (query, text) pair, and the ``k`` best come back with the
reranker's score as ``hit.score`` and ``hit.scores["rerank"]`` beside the first stage's scores.

Example:
    >>> from bge_integrations import BGEReranker
    >>> rr = BGEReranker("BAAI/bge-reranker-v2-m3")  # doctest: +SKIP
    >>> index.search("what is a panda?", k=3, rerank=rr, candidates=50)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from .contract import Hit

if TYPE_CHECKING:
    from ..core.rerank import BGEReranker

__all__ = ["search_reranked", "rerank_hits", "check_rerank", "RERANK_KEY"]

#: the key of the reranker's score in ``Hit.scores``
RERANK_KEY = "rerank"


def check_rerank(rerank: object, candidates: object) -> None:
    """A ``TypeError`` / ``ValueError`` for a ``rerank`` that is not a reranker or ``None``,
    or ``candidates`` that is not a positive int."""
    from ..core.rerank import BGEReranker

    if rerank is not None and not isinstance(rerank, BGEReranker):
        msg = (f"rerank must be a BGEReranker or None, got {type(rerank).__name__}; e.g. "
               "rerank=BGEReranker('BAAI/bge-reranker-v2-m3').")
        raise TypeError(msg)
    if not isinstance(candidates, int) or isinstance(candidates, bool) or candidates < 1:
        msg = f"candidates must be a positive int (documents to rerank), got {candidates!r}."
        raise ValueError(msg)


def rerank_hits(query: str, hits: list[Hit], reranker: BGEReranker, k: int) -> list[Hit]:
    """The ``k`` best of ``hits`` by the reranker's score, best first, the score recorded."""
    ranked = reranker.rerank(query, [h.text for h in hits], top_n=k)
    return [dataclasses.replace(hits[i], score=score,
                                scores={**hits[i].scores, RERANK_KEY: score})
            for i, score in ranked]


def search_reranked(query: str, k: int, rerank: BGEReranker | None, candidates: int,
                    search: Callable[[int], list[Hit]]) -> list[Hit]:
    """``search(k)``, or with a reranker: ``search(max(candidates, k))`` reranked to ``k``."""
    check_rerank(rerank, candidates)
    if rerank is None:
        return search(k)
    return rerank_hits(query, search(max(candidates, k)), rerank, k)
