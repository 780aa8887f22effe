"""The result of :func:`~bge_integrations.evaluation.evaluate`: metrics per setting, per-query
values, significance tests between settings (``ranx.compare``), a plain table and JSON.

Example:
    >>> report.metrics["dense"]["ndcg@10"]  # doctest: +SKIP
    0.71
    >>> print(report.table(["ndcg@10", "recall@100"]))  # doctest: +SKIP
    >>> report.compare(["ndcg@10"], stat_test="fisher")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metrics import make_qrels, make_run, ranx

__all__ = ["Report", "STAT_TESTS"]

#: ranx.compare's tests: paired t-test, Fisher's randomisation test, Tukey's HSD
STAT_TESTS = ("student", "fisher", "tukey")


@dataclass
class Report:
    """Retrieval quality of one or more search settings on one set of judged queries.

    Attributes:
        metrics: setting -> metric -> mean over the judged queries (``"ndcg@10"``,
            ``"mrr@10"``, ``"recall@100"``, ``"map@100"``: ranx's names).
        per_query: setting -> metric -> query id -> value (for your own analysis).
        settings: setting -> the search keywords it ran with (``index.search(**settings[s])``
            reproduces it; ``+rerank`` settings name the reranking depth instead).
        k: the cutoffs.
        seconds: setting -> wall-clock seconds of its searches; a reranked setting adds an
            equal share of the reranking time (pairs are scored once for all of them).
        qrels: the judged queries evaluated, ``{qid: {doc_id: grade}}``.
        ranked: setting -> qid -> the document ids it returned, best first (to ``max(k)``).
        extra: anything added later (``tune`` puts its result under ``"tuning"``).
    """

    metrics: dict[str, dict[str, float]]
    per_query: dict[str, dict[str, dict[str, float]]]
    settings: dict[str, dict[str, Any]]
    k: tuple[int, ...]
    seconds: dict[str, float]
    qrels: dict[str, dict[str, int]] = field(repr=False)
    ranked: dict[str, dict[str, list[str]]] = field(repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The settings, in evaluation order."""
        return list(self.metrics)

    @property
    def metric_names(self) -> list[str]:
        """The metrics, as ranx names them."""
        return list(next(iter(self.metrics.values())))

    def compare(self, metrics: str | Sequence[str] | None = None, *,
                stat_test: str = "student", max_p: float = 0.05,
                names: Sequence[str] | None = None) -> Any:
        """Significance tests between settings, by ``ranx.compare`` on the per-query values.

        The first call in a process takes a while (ranx's ``Qrels`` and ``Run`` objects are
        numba dictionaries, compiled on first use).

        Args:
            metrics: metrics to compare (default: every metric at the largest cutoff <= 10).
            stat_test: ``"student"`` (paired t-test), ``"fisher"`` (randomisation test) or
                ``"tukey"`` (Tukey's HSD).
            max_p: significance level.
            names: settings to compare (default all; at least two).

        Returns:
            ranx's ``Report`` (print it for a table; ``.to_dict()`` has the p-values under
            ``[a]["comparisons"][b][metric]``).

        Example:
            >>> print(report.compare("ndcg@10"))  # doctest: +SKIP
        """
        if stat_test not in STAT_TESTS:
            msg = f"stat_test {stat_test!r} is not one of {', '.join(STAT_TESTS)}."
            raise ValueError(msg)
        chosen = list(names) if names is not None else self.names
        unknown = [n for n in chosen if n not in self.ranked]
        if unknown or len(chosen) < 2:
            msg = (f"compare needs two or more of the report's settings ({', '.join(self.names)})"
                   f", got {chosen!r}.")
            raise ValueError(msg)
        metrics = self._metrics(metrics)
        qrels = make_qrels(self.qrels)
        runs = [make_run(self.ranked[n], n, qrels) for n in chosen]
        return ranx().compare(qrels, runs, metrics, stat_test=stat_test, max_p=max_p,
                              rounding_digits=4)

    def _metrics(self, metrics: str | Sequence[str] | None) -> list[str]:
        if metrics is None:
            cutoff = max([c for c in self.k if c <= 10] or [min(self.k)])
            return [m for m in self.metric_names if m.endswith(f"@{cutoff}")]
        chosen = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in chosen if m not in self.metric_names]
        if unknown:
            msg = f"unknown metric(s) {unknown}; the report has {', '.join(self.metric_names)}."
            raise ValueError(msg)
        return chosen

    def table(self, metrics: Sequence[str] | None = None) -> str:
        """A plain-text table: one row per setting, one column per metric.

        Example:
            >>> print(report.table(["ndcg@10"]))  # doctest: +SKIP
            setting       ndcg@10
            dense          0.7123
        """
        columns = list(metrics) if metrics is not None else self.metric_names
        width = max(len("setting"), *(len(n) for n in self.names))
        lines = ["  ".join([f"{'setting':<{width}}", *(f"{c:>10}" for c in columns)])]
        for name in self.names:
            values = (f"{self.metrics[name][c]:>10.4f}" for c in columns)
            lines.append("  ".join([f"{name:<{width}}", *values]))
        return "\n".join(lines)

    def to_dict(self, *, per_query: bool = True, stat_test: str = "student") -> dict[str, Any]:
        """Everything as JSON-ready data, with the p-values of :meth:`compare` (all settings,
        the default metrics) under ``"significance"`` when there are two settings or more."""
        out: dict[str, Any] = {
            "k": list(self.k), "metrics": self.metrics,
            "settings": {n: _jsonable(s) for n, s in self.settings.items()},
            "seconds": self.seconds, "queries": len(self.qrels),
        }
        if len(self.names) > 1:
            compared = self.compare(stat_test=stat_test).to_dict()
            out["significance"] = {
                "stat_test": stat_test,
                "p_values": {a: {b: {m: float(p) for m, p in tests.items()}
                                 for b, tests in compared[a]["comparisons"].items()}
                             for a in self.names}}
        if per_query:
            out["per_query"] = self.per_query
        out.update(_jsonable(self.extra))
        return out

    def save(self, path: str | os.PathLike[str], **options: Any) -> None:
        """Write :meth:`to_dict` as JSON to ``path``.

        Example:
            >>> report.save("report.json")  # doctest: +SKIP
        """
        Path(path).write_text(json.dumps(self.to_dict(**options), indent=2, ensure_ascii=False),
                              encoding="utf-8")


def _jsonable(value: Any) -> Any:
    """Tuples, enums and numpy numbers as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, int | float | str):
        return value.value
    if hasattr(value, "item"):
        return value.item()
    return value
