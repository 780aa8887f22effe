"""A PNG chart of a :class:`~.report.Report`: the metrics per setting, and the tuned weight
surface when a :class:`~.tune.TuneResult` is given (matplotlib's Agg canvas: no display, no
pyplot state).

Example:
    >>> plot_report(report, "report.png", tuning=best)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .report import Report

__all__ = ["plot_report", "headline_metrics"]


def headline_metrics(report: Report) -> list[str]:
    """nDCG, MRR and MAP at the largest cutoff <= 10, and Recall at the largest cutoff."""
    small = max([c for c in report.k if c <= 10] or [min(report.k)])
    return [f"ndcg@{small}", f"mrr@{small}", f"map@{small}", f"recall@{max(report.k)}"]


def _figure(**options: Any) -> Any:
    """A matplotlib ``Figure`` drawn by the Agg canvas: no pyplot, no global backend change."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        msg = "charts need matplotlib: pip install 'bge-integrations[eval]'."
        raise ImportError(msg) from None
    fig = Figure(**options)
    FigureCanvasAgg(fig)
    return fig


def _bars(ax: Any, report: Report) -> None:
    metrics = headline_metrics(report)
    names = report.names
    width = 0.8 / len(metrics)
    x = np.arange(len(names))
    for i, metric in enumerate(metrics):
        values = [report.metrics[n][metric] for n in names]
        bars = ax.bar(x + (i - (len(metrics) - 1) / 2) * width, values, width, label=metric)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=2, rotation=90)
    ax.set_xticks(x, names, rotation=20 if len(names) > 4 else 0, ha="right"
                  if len(names) > 4 else "center")
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("score")
    ax.set_title(f"Retrieval quality per setting ({len(report.qrels)} judged queries)")
    ax.legend(loc="upper left", fontsize=8, ncols=len(metrics))
    ax.grid(axis="y", alpha=0.3)


def _surface(fig: Any, ax: Any, tuning: Any) -> None:
    """The tuning metric over the weights of the chosen fusion (and RRF constant)."""
    fusion = tuning.params["fusion"]
    points = [g for g in tuning.grid if g["fusion"] == fusion and g["rrf_k"] == tuning.rrf_k]
    w = np.array([g["weights"] for g in points])
    score = np.array([g["score"] for g in points])
    best = tuning.params["weights"]
    label = f"{tuning.metric} on dev (candidate pool)"
    if np.allclose(w[:, 2], 0):  # no ColBERT: a curve over the dense weight
        order = np.argsort(w[:, 0])
        ax.plot(w[order, 0], score[order], marker="o")
        ax.axvline(best[0], color="red", linestyle=":", label=f"chosen {tuple(best)}")
        ax.set_xlabel("dense weight (sparse = 1 - dense)")
        ax.set_ylabel(label)
    else:
        surface = ax.tricontourf(w[:, 0], w[:, 1], score, levels=14, cmap="viridis")
        ax.scatter(w[:, 0], w[:, 1], s=6, c="white", alpha=0.5)
        fig.colorbar(surface, ax=ax, label=label)
        ax.scatter([best[0]], [best[1]], marker="*", s=260, c="red", edgecolors="white",
                   label=f"chosen {tuple(best)}")
        ax.set_xlabel("dense weight")
        ax.set_ylabel("sparse weight  (ColBERT = 1 - dense - sparse)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="upper right", fontsize=8)
    constant = f", rrf_k={tuning.rrf_k}" if tuning.rrf_k is not None else ""
    ax.set_title(f"Tuned {fusion} fusion{constant}: {tuning.metric} dev "
                 f"{tuning.dev_score:.3f}, test {tuning.test_score:.3f}", fontsize=10)


def plot_report(report: Report, path: str | os.PathLike[str], *, tuning: Any = None) -> None:
    """Write the chart to ``path`` (PNG).

    Args:
        report: what :func:`~bge_integrations.evaluation.evaluate` returned.
        path: the PNG file.
        tuning: a :class:`~bge_integrations.evaluation.TuneResult`: adds the surface of the
            tuning metric over the weighted-fusion grid, the chosen point starred.
    """
    panels = 2 if tuning is not None else 1
    fig = _figure(figsize=(7 + 6.5 * (panels - 1), 4.8), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _bars(axes[0], report)
    if tuning is not None:
        _surface(fig, axes[1], tuning)
    fig.savefig(path, dpi=110)
