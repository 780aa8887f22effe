"""Reranking retrieved lists for evaluation, each (query, document) pair scored once.

The reranker is any object with ``rerank(query, documents, top_n)`` returning
``[(position, score), ...]`` (``BGEReranker`` does); one with ``compute_score(pairs)`` too is
given every pair at once, so it batches across queries. Pairs are scored once per query even
when several settings retrieved the same document, which assumes what cross-encoders do: a
pair's score does not depend on the other documents of the list.

Example:
    >>> ranked = {"dense": {"q1": [("d1", "text one"), ("d2", "text two")]}}
    >>> rerank_runs(reranker, {"q1": "query"}, ranked, (2,))  # doctest: +SKIP
    {'dense+rerank': {'q1': ['d2', 'd1']}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["check_reranker", "check_depths", "rerank_runs", "reranked_name"]


def check_reranker(reranker: object) -> None:
    """A ``TypeError`` unless ``reranker`` has ``rerank(query, documents, top_n)``."""
    if not callable(getattr(reranker, "rerank", None)):
        msg = (f"rerank must be an object with rerank(query, documents, top_n) (e.g. "
               f"BGEReranker), got {type(reranker).__name__}.")
        raise TypeError(msg)


def check_depths(depth: int | Sequence[int]) -> tuple[int, ...]:
    """Reranking depths as a sorted tuple of positive ints, or a ``ValueError``."""
    values = [depth] if isinstance(depth, int) else list(depth)
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0
                         for v in values):
        msg = f"rerank_depth must be positive integers, got {depth!r}."
        raise ValueError(msg)
    return tuple(sorted(set(values)))


def reranked_name(name: str, depth: int, depths: Sequence[int]) -> str:
    """``"dense+rerank"``, or ``"dense+rerank@20"`` when several depths are compared."""
    return f"{name}+rerank" if len(depths) == 1 else f"{name}+rerank@{depth}"


def _pair_scores(reranker: Any, queries: Mapping[str, str],
                 docs: Mapping[str, dict[str, str]]) -> dict[str, dict[str, float]]:
    """qid -> doc id -> reranker score, for every candidate of every query."""
    if callable(getattr(reranker, "compute_score", None)):
        pairs = [(queries[q], text) for q, cands in docs.items() for text in cands.values()]
        flat = np.asarray(reranker.compute_score(pairs), dtype=np.float64).reshape(-1)
        if len(flat) != len(pairs):
            msg = f"compute_score returned {len(flat)} scores for {len(pairs)} pairs."
            raise ValueError(msg)
        out, pos = {}, 0
        for q, cands in docs.items():
            out[q] = dict(zip(cands, flat[pos:pos + len(cands)].tolist(), strict=False))
            pos += len(cands)
        return out
    out = {}
    for q, cands in docs.items():
        ids, texts = list(cands), list(cands.values())
        ranked = reranker.rerank(queries[q], texts, top_n=None) if texts else []
        out[q] = {ids[int(pos)]: float(score) for pos, score in ranked}
        if len(out[q]) != len(ids):
            msg = (f"reranker.rerank returned {len(out[q])} results for {len(ids)} documents "
                   "with top_n=None; it must score every document.")
            raise ValueError(msg)
    return out


def rerank_runs(reranker: Any, queries: Mapping[str, str],
                ranked: Mapping[str, Mapping[str, Sequence[tuple[str, str]]]],
                depths: Sequence[int]) -> dict[str, dict[str, list[str]]]:
    """Rerank the top ``depth`` of each setting's lists, for each depth.

    Args:
        reranker: see the module docstring.
        queries: qid -> query text.
        ranked: setting -> qid -> ``[(doc_id, text), ...]`` best first.
        depths: how many of the top documents the reranker re-orders; the rest keep their
            retrieval order below them.

    Returns:
        ``"<setting>+rerank[@depth]"`` -> qid -> ranked doc ids.
    """
    top = max(depths)
    docs: dict[str, dict[str, str]] = {}
    for lists in ranked.values():
        for q, hits in lists.items():
            docs.setdefault(q, {}).update(hits[:top])
    scores = _pair_scores(reranker, queries, docs)
    out: dict[str, dict[str, list[str]]] = {}
    for name, lists in ranked.items():
        for depth in depths:
            runs = {}
            for q, hits in lists.items():
                ids = [doc for doc, _ in hits]
                head = sorted(ids[:depth], key=lambda d, s=scores[q]: -s[d])  # stable on ties
                runs[q] = head + ids[depth:]
            out[reranked_name(name, depth, depths)] = runs
    return out
