""":func:`tune`: the dense / sparse / ColBERT weights (and the RRF constant) that rank best on
your judged queries, chosen on a dev split and scored on a held-out test split.

How it searches, without re-embedding anything per grid point:

1. One ``search_many`` over the dev queries (equal-weight RRF, depth ``pool_depth``) gives each
   query a candidate pool that every mode ranks well, with each candidate's dense, sparse and
   ColBERT scores (``Hit.scores``).
2. Every grid point re-ranks the pools on the client with the indexes' own fusion formula
   (:func:`bge_integrations.retrieval.fusion.fuse`) and ranx scores the metric: a simplex grid
   of weights (step 0.1) for weighted fusion, a coarser one (step 0.2) times RRF constants
   for RRF, then a finer grid (a quarter step) around the best point of each.
3. The best setting is searched for real (``index.search_many(**best)``) on the dev split and
   then on the test split, whose score is reported; the test split plays no part in the choice.

Example:
    >>> best = tune(index, data.queries, data.qrels, metric="ndcg@10")  # doctest: +SKIP
    >>> best.dev_score, best.test_score  # doctest: +SKIP
    (0.78, 0.74)
    >>> index.search("a question", **best)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..retrieval.fusion import Fusion, RetrievalMode, fuse
from .data import few
from .evaluate import evaluate, judged_queries
from .metrics import PoolScorer, check_metric
from .report import Report
from .targets import Target, as_target, check_doc_ids

__all__ = ["tune", "TuneResult", "split_queries", "simplex", "check_tunable"]

#: RRF constants tried on the coarse grid (60 is the usual default)
RRF_CONSTANTS = (10, 30, 60, 100)
#: weight steps of the coarse weighted and RRF grids
WEIGHTED_STEP, RRF_STEP = 0.1, 0.2


@dataclass(frozen=True)
class TuneResult(Mapping[str, Any]):
    """The tuned search settings; a mapping of search keywords, so ``index.search(q, **best)``
    and ``BGEM3Retriever(index=index, **best)`` take it directly.

    Attributes:
        params: ``{"mode": "hybrid", "weights": (d, s, c), "fusion": "weighted" | "rrf"}``.
        metric: the metric optimised (ranx name).
        dev_score: the metric of ``params`` on the dev split, searched by the index.
        test_score: the same on the test split (never used to choose).
        rrf_k: the RRF constant chosen when ``fusion`` is ``"rrf"`` (an index option:
            ``HybridIndex(m3, rrf_k=...)``), else None.
        dev_queries: the query ids tuned on.
        test_queries: the held-out query ids.
        grid: every grid point tried: ``{"fusion", "weights", "rrf_k", "score"}`` (the pool
            score on dev), in the order tried.
        test_report: the full :class:`Report` of ``params`` on the test split.
    """

    params: dict[str, Any]
    metric: str
    dev_score: float
    test_score: float
    rrf_k: int | None
    dev_queries: list[str] = field(repr=False)
    test_queries: list[str] = field(repr=False)
    grid: list[dict[str, Any]] = field(repr=False)
    test_report: Report = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (settings, scores, split sizes and the grid)."""
        return {"params": {**self.params, "weights": list(self.params["weights"])},
                "metric": self.metric, "dev_score": self.dev_score,
                "test_score": self.test_score, "rrf_k": self.rrf_k,
                "dev_queries": len(self.dev_queries), "test_queries": len(self.test_queries),
                "grid": [{**g, "weights": list(g["weights"])} for g in self.grid]}


def simplex(step: float, dims: int = 3) -> list[tuple[float, float, float]]:
    """Weight triples on a simplex grid: non-negative multiples of ``step`` summing to 1
    (``dims=2``: the ColBERT weight stays 0).

    Example:
        >>> simplex(0.5)
        [(0.0, 0.0, 1.0), (0.0, 0.5, 0.5), (0.0, 1.0, 0.0), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0), \
(1.0, 0.0, 0.0)]
    """
    n = round(1 / step)
    points = []
    for i in range(n + 1):
        for j in range(n + 1 - i):
            c = n - i - j
            if dims == 2 and c:
                continue
            points.append((round(i / n, 6), round(j / n, 6), round(c / n, 6)))
    return points


def _near(center: Sequence[float], step: float, dims: int) -> list[tuple[float, float, float]]:
    """Simplex points within one coarse step of ``center``, at a quarter of that step."""
    fine = step / 4
    out = []
    for offsets in itertools.product(range(-4, 5), repeat=2):
        d = center[0] + offsets[0] * fine
        s = center[1] + offsets[1] * fine
        c = 1.0 - d - s if dims == 3 else 0.0
        if dims == 2:
            s = 1.0 - d
        w = (round(d, 6), round(s, 6), round(c, 6))
        if min(w) >= -1e-9 and abs(sum(w) - 1) < 1e-6:
            out.append(tuple(max(x, 0.0) for x in w))
    return sorted(set(out))


def split_queries(qids: Sequence[str], split: float | tuple[Collection[str], Collection[str]],
                  seed: int = 0) -> tuple[list[str], list[str]]:
    """``(dev, test)`` query ids: a seeded random fraction ``split`` for dev, or the two given
    collections (disjoint, every id judged).

    Example:
        >>> split_queries(["a", "b", "c", "d"], 0.5, seed=0)
        (['a', 'c'], ['b', 'd'])
    """
    if isinstance(split, float | int) and not isinstance(split, bool):
        if not 0 < split < 1:
            msg = f"split must be a dev fraction between 0 and 1, got {split!r}."
            raise ValueError(msg)
        order = np.random.default_rng(seed).permutation(len(qids))
        n_dev = int(round(split * len(qids)))
        if n_dev == 0 or n_dev == len(qids):
            msg = (f"split={split} of {len(qids)} judged queries leaves the dev or the test "
                   "split empty; judge more queries or choose another fraction.")
            raise ValueError(msg)
        ordered = sorted(qids)
        return (sorted(ordered[i] for i in order[:n_dev]),
                sorted(ordered[i] for i in order[n_dev:]))
    try:
        dev, test = (sorted(set(part)) for part in split)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        msg = ("split must be a dev fraction (e.g. 0.5) or a pair (dev query ids, test query "
               f"ids), got {split!r:.80}.")
        raise ValueError(msg) from None
    overlap = set(dev) & set(test)
    missing = (set(dev) | set(test)) - set(qids)
    if overlap or missing or not dev or not test:
        why = (f"{len(overlap)} query id(s) in both: {few(overlap)}" if overlap else
               f"{len(missing)} id(s) without a judged query: {few(missing)}" if missing else
               "one split is empty")
        msg = f"split must give two disjoint non-empty sets of judged query ids; {why}."
        raise ValueError(msg)
    return dev, test


class _Pools:
    """Each dev query's candidates with their per-mode scores, re-ranked per grid point.

    Weighted fusion is elementwise, so it runs once over every query's candidates together and
    one stable sort by (query, -score) orders all pools; RRF ranks within each pool, per query.
    """

    def __init__(self, target: Target, queries: Mapping[str, str],
                 qrels: Mapping[str, Mapping[str, int]], metric: str, depth: int) -> None:
        weights = (1.0, 1.0, 1.0 if target.has_colbert else 0.0)
        settings = {**target.settings(["hybrid-rrf"])["hybrid-rrf"], "weights": weights}
        qids = list(qrels)
        hits = target.search([queries[q] for q in qids], depth, settings)
        parts = ("dense", "sparse", "colbert") if target.has_colbert else ("dense", "sparse")
        pools, self.scores = {}, []
        for q, row in zip(qids, hits, strict=False):
            row = sorted(row, key=lambda h: -h.scores["dense"])  # ties: dense first, as the index
            pools[q] = [h.id for h in row]
            self.scores.append({p: np.array([h.scores[p] for h in row]) for p in parts})
        sizes = np.array([len(pools[q]) for q in qids])
        self.bounds = np.concatenate([[0], np.cumsum(sizes)])
        self.group = np.repeat(np.arange(len(qids)), sizes)
        self.flat = {p: np.concatenate([s[p] for s in self.scores] or [np.zeros(0)])
                     for p in parts}
        self.scorer = PoolScorer(qrels, pools, metric)

    def score(self, fusion: Fusion, weights: tuple[float, float, float], rrf_k: int) -> float:
        if fusion is Fusion.WEIGHTED:
            fused = fuse(RetrievalMode.HYBRID, fusion, self.flat, weights, rrf_k)
            order = np.lexsort((-fused, self.group))  # stable: ties keep the dense order
            orders = [order[lo:hi] - lo
                      for lo, hi in zip(self.bounds[:-1], self.bounds[1:], strict=True)]
        else:
            orders = [np.argsort(-fuse(RetrievalMode.HYBRID, fusion, parts, weights, rrf_k),
                                 kind="stable") if len(parts["dense"]) else
                      np.zeros(0, dtype=np.int64) for parts in self.scores]
        return self.scorer.score(orders)


def check_tunable(index: Any) -> Target:
    """The :class:`Target` of ``index``, or a ``ValueError`` when it has no weights to tune."""
    target = as_target(index)
    if not target.hybrid:
        msg = (f"a {type(target.index).__name__} serves one ranking ({target.modes[0]}): "
               "there are no weights to tune; use evaluate(), or a BGE-M3 HybridIndex / "
               "QdrantHybridIndex.")
        raise ValueError(msg)
    return target


def _valid(weights: tuple[float, float, float], has_colbert: bool) -> bool:
    return weights[0] + weights[1] > 0 or (has_colbert and weights[2] > 0)


@contextmanager
def _rrf_constant(index: Any, rrf_k: int | None) -> Iterator[None]:
    """Search ``index`` with RRF constant ``rrf_k`` (its public ``rrf_k``), then restore it."""
    saved = getattr(index, "rrf_k", None)
    if rrf_k is None or saved == rrf_k:
        yield
        return
    index.rrf_k = rrf_k
    try:
        yield
    finally:
        index.rrf_k = saved


def tune(index: Any, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], *,
         metric: str = "ndcg@10", split: float | tuple[Collection[str], Collection[str]] = 0.5,
         seed: int = 0, pool_depth: int = 100, rrf: bool = True) -> TuneResult:
    """Choose the fusion weights (and RRF constant) that maximise ``metric`` on a dev split.

    Args:
        index: a ``HybridIndex`` or ``QdrantHybridIndex`` (or a ``BGEM3Retriever`` over one:
            its metadata filter applies).
        queries: ``{qid: text}``.
        qrels: ``{qid: {doc_id: grade}}``.
        metric: what to maximise, e.g. ``"ndcg@10"``, ``"recall@100"`` (ranx names).
        split: the dev fraction of the judged queries (seeded random split; the rest is
            test), or ``(dev_ids, test_ids)`` (e.g. BEIR's dev and test qrels).
        seed: seed of the random split.
        pool_depth: candidates per dev query re-ranked on the grid.
        rrf: also try reciprocal rank fusion and its constant.

    Returns:
        A :class:`TuneResult`; ``index.search(query, **result)`` searches with the chosen
        setting. When it is RRF with another constant than the index's, build the index with
        ``rrf_k=result.rrf_k`` (tune sets the index's ``rrf_k`` only while scoring it).

    Raises:
        ValueError: the index has one mode only (nothing to tune), a bad metric or split, or
            the errors of :func:`~bge_integrations.evaluation.evaluate`.

    Example:
        >>> best = tune(index, queries, qrels, split=0.5)  # doctest: +SKIP
        >>> dict(best)  # doctest: +SKIP
        {'mode': 'hybrid', 'weights': (0.5, 0.1, 0.4), 'fusion': 'weighted'}
    """
    _, cutoff = check_metric(metric)
    if not isinstance(pool_depth, int) or pool_depth < cutoff:
        msg = f"pool_depth must be an int >= the metric's cutoff ({cutoff}), got {pool_depth!r}."
        raise ValueError(msg)
    target = check_tunable(index)
    judged_q, judged = judged_queries(queries, qrels)
    check_doc_ids(target, judged)
    dev, test = split_queries(list(judged), split, seed)
    pools = _Pools(target, judged_q, {q: judged[q] for q in dev}, metric, pool_depth)
    dims = 3 if target.has_colbert else 2
    default_k = getattr(target.index, "rrf_k", None) or 60
    grid: list[dict[str, Any]] = []
    tried: set[tuple[str, tuple[float, float, float], int]] = set()

    def run(fusion: Fusion, points: Sequence[tuple[float, float, float]], rrf_k: int) -> None:
        for w in points:
            if _valid(w, target.has_colbert) and (fusion.value, w, rrf_k) not in tried:
                tried.add((fusion.value, w, rrf_k))
                grid.append({"fusion": fusion.value, "weights": w,
                             "rrf_k": rrf_k if fusion is Fusion.RRF else None,
                             "score": pools.score(fusion, w, rrf_k)})

    def best_of(fusion: Fusion) -> dict[str, Any]:
        return max((g for g in grid if g["fusion"] == fusion.value), key=lambda g: g["score"])

    run(Fusion.WEIGHTED, simplex(WEIGHTED_STEP, dims), default_k)
    run(Fusion.WEIGHTED, _near(best_of(Fusion.WEIGHTED)["weights"], WEIGHTED_STEP, dims),
        default_k)
    if rrf:
        for constant in sorted({*RRF_CONSTANTS, default_k}):
            run(Fusion.RRF, simplex(RRF_STEP, dims), constant)
        top = best_of(Fusion.RRF)
        run(Fusion.RRF, _near(top["weights"], RRF_STEP, dims), top["rrf_k"])
    best = max(grid, key=lambda g: g["score"])  # first of equals: weighted before RRF
    params = {"mode": "hybrid", "weights": best["weights"], "fusion": best["fusion"]}
    with _rrf_constant(target.index, best["rrf_k"]):
        reports = {name: evaluate(index, judged_q, {q: judged[q] for q in qids}, k=(cutoff,),
                                  modes={"tuned": params})
                   for name, qids in (("dev", dev), ("test", test))}
    return TuneResult(params, metric, reports["dev"].metrics["tuned"][metric],
                      reports["test"].metrics["tuned"][metric], best["rrf_k"], dev, test, grid,
                      reports["test"])
