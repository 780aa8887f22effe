"""Ranked lists -> ranx runs -> metric values. Every number comes from ``ranx``; nothing here
computes a metric.

A run is built from each query's ranked document ids with scores that fall with the rank
(``n, n-1, ..., 1``), so ranx evaluates exactly the order the index returned, ties included
(ranx re-sorts a run by score, and tied scores would otherwise be re-ordered).

Example:
    >>> means, per_query = Judgments({"q1": {"d1": 1}}).score({"q1": ["d2", "d1"]}, ["mrr@10"])
    >>> means
    {'mrr@10': 0.5}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["METRICS", "check_k", "metric_names", "check_metric", "make_qrels", "make_run",
           "Judgments", "PoolScorer", "ranx"]

#: the metrics of a report, spelled as ranx spells them (``ndcg@10``, ``recall@100``, ...)
METRICS = ("ndcg", "mrr", "recall", "map")


def ranx() -> Any:
    """The ``ranx`` module, or an ``ImportError`` naming the extra to install."""
    try:
        import ranx as module
    except ImportError:
        msg = "evaluation needs ranx: pip install 'bge-integrations[eval]'."
        raise ImportError(msg) from None
    return module


def check_k(k: int | Iterable[int]) -> tuple[int, ...]:
    """``k`` as a sorted tuple of distinct positive cutoffs, or a ``ValueError``.

    Example:
        >>> check_k((10, 1, 10))
        (1, 10)
    """
    values = [k] if isinstance(k, int) else list(k)
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0
                         for v in values):
        msg = f"k must be positive integers (cutoffs such as (1, 10, 100)), got {k!r}."
        raise ValueError(msg)
    return tuple(sorted(set(values)))


def metric_names(k: Sequence[int]) -> list[str]:
    """Every metric at every cutoff, as ranx names them.

    Example:
        >>> metric_names((10,))
        ['ndcg@10', 'mrr@10', 'recall@10', 'map@10']
    """
    return [f"{metric}@{cutoff}" for metric in METRICS for cutoff in k]


def check_metric(metric: str) -> tuple[str, int]:
    """``(name, cutoff)`` of a metric such as ``"ndcg@10"``, or a ``ValueError``.

    Example:
        >>> check_metric("recall@100")
        ('recall', 100)
    """
    name, _, cutoff = str(metric).partition("@")
    if name not in METRICS or not cutoff.isdigit() or int(cutoff) <= 0:
        msg = (f"metric {metric!r} is not one of {', '.join(METRICS)} at a positive cutoff; "
               "write it as ranx does, e.g. 'ndcg@10'.")
        raise ValueError(msg)
    return name, int(cutoff)


def make_qrels(qrels: Mapping[str, Mapping[str, int]]) -> Any:
    """A ``ranx.Qrels`` of ``{qid: {doc_id: grade}}``."""
    return ranx().Qrels.from_dict({q: dict(judged) for q, judged in qrels.items()})


def make_run(ranked: Mapping[str, Sequence[str]], name: str, qrels: Any) -> Any:
    """A ``ranx.Run`` named ``name`` over exactly the queries of the ``ranx.Qrels``, from each
    query's ranked document ids (best first); a query without results retrieves nothing.
    """
    judged = set(qrels.keys())
    run = {q: {doc: float(len(ids) - pos) for pos, doc in enumerate(ids)}
           for q, ids in ranked.items() if ids and q in judged}
    out = ranx().Run.from_dict(run, name=name) if run else ranx().Run(name=name)
    out = out.make_comparable(qrels)
    out.name = name
    return out


class Judgments:
    """Qrels in ranx's array form, scoring ranked lists of their queries with ``ranx.evaluate``.

    ranx's array form (what its ``Qrels`` and ``Run`` objects become before any metric runs)
    is one ``(n, 2)`` float array per query of ``[hash(doc_id), score]`` rows, best first;
    building it directly skips the typed dictionaries that numba compiles anew in every
    process. :func:`make_qrels` / :func:`make_run` build the objects ``ranx.compare`` needs.

    Args:
        qrels: ``{qid: {doc_id: grade}}``; metrics are averaged over these queries.

    Example:
        >>> judgments = Judgments({"q1": {"d1": 1}, "q2": {"d3": 1}})
        >>> means, per_query = judgments.score({"q1": ["d2", "d1"]}, ["mrr@10"])
        >>> means["mrr@10"], per_query["mrr@10"]
        (0.25, {'q1': 0.5, 'q2': 0.0})
    """

    #: an empty result list: one row of an id no qrels can hold (ranx needs a 2-D row)
    _NOTHING = np.zeros((1, 2), dtype=np.float64)

    def __init__(self, qrels: Mapping[str, Mapping[str, int]]) -> None:
        ranx()  # the ImportError that names the extra
        from ranx.utils import python_dict_to_typed_list

        self.qids = list(qrels)
        self._qrels = python_dict_to_typed_list({q: dict(qrels[q]) for q in self.qids},
                                                sort=True)

    @staticmethod
    def hashes(ids: Sequence[str]) -> np.ndarray:
        """Document ids hashed as ranx hashes them."""
        return np.array([hash(d) for d in ids], dtype=np.float64)

    def evaluate(self, rows: Sequence[np.ndarray], metrics: Sequence[str]) -> dict[str, np.ndarray]:
        """Per-query values of each metric; ``rows[i]`` holds the hashed ids ranked for
        ``self.qids[i]``, best first."""
        from numba.typed import List as TypedList

        typed = TypedList()
        for hashes in rows:
            if len(hashes):
                ranked = np.empty((len(hashes), 2), dtype=np.float64)
                ranked[:, 0] = hashes
                ranked[:, 1] = np.arange(len(hashes), 0, -1)
                typed.append(ranked)
            else:
                typed.append(self._NOTHING)
        # ranx 0.3 fails on one metric with return_mean=False (a KeyError): ask for it twice
        asked = list(metrics) if len(metrics) > 1 else [metrics[0], metrics[0]]
        values = ranx().evaluate(self._qrels, typed, asked, return_mean=False)
        return {m: np.asarray(values[m], dtype=np.float64) for m in metrics}

    def score(self, ranked: Mapping[str, Sequence[str]], metrics: Sequence[str]
              ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """``(means, per_query)`` of ranked document ids ``{qid: [doc_id, ...]}``; a judged
        query missing from ``ranked`` retrieved nothing."""
        values = self.evaluate([self.hashes(ranked.get(q, ())) for q in self.qids], metrics)
        means = {m: float(v.mean()) for m, v in values.items()}
        per_query = {m: dict(zip(self.qids, v.tolist(), strict=False)) for m, v in values.items()}
        return means, per_query


class PoolScorer:
    """One metric of many orderings of the same candidate pools, fast (for tuning grids).

    Args:
        qrels: ``{qid: {doc_id: grade}}``.
        pools: ``{qid: candidate doc ids}`` for every qid of ``qrels`` (may be empty).
        metric: e.g. ``"ndcg@10"``.

    Example:
        >>> scorer = PoolScorer({"q1": {"b": 1}}, {"q1": ["a", "b"]}, "mrr@10")
        >>> scorer.score([np.array([1, 0])])
        1.0
    """

    def __init__(self, qrels: Mapping[str, Mapping[str, int]],
                 pools: Mapping[str, Sequence[str]], metric: str) -> None:
        check_metric(metric)
        self.metric = metric
        self._judgments = Judgments(qrels)
        self._hashes = [Judgments.hashes(pools[q]) for q in self._judgments.qids]

    def score(self, orders: Sequence[np.ndarray]) -> float:
        """The mean metric when each query's pool is ranked by ``orders[i]`` (positions in
        its pool, best first)."""
        rows = [hashes[order] for hashes, order in zip(self._hashes, orders, strict=False)]
        return float(self._judgments.evaluate(rows, [self.metric])[self.metric].mean())
