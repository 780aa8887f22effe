"""Retrieval modes and the fusion of dense, sparse and ColBERT scores into one ranking.

Both index backends compute, for each query, the three base scores of a candidate set and
hand them here, so the embedded index and the Qdrant index rank by exactly the same formula:

* ``weighted``: FlagEmbedding's ``colbert+sparse+dense`` score,
  ``(w_d*dense + w_s*sparse + w_c*colbert) / (w_d + w_s + w_c)`` (``sparse+dense`` when the
  index stores no ColBERT vectors), computed by ``core.scores.combine_scores``.
* ``rrf``: weighted reciprocal rank fusion, ``sum_m w_m / (rrf_k + rank_m)`` with 1-based
  ranks of the candidates under each mode (a zero weight drops that mode). A candidate that
  shares no token with the query is not ranked by ``sparse`` and gets no sparse term, as in
  an RRF of result lists where lexical search does not return it.

Both backends list ``hybrid`` candidates by descending dense score and :func:`top_k` keeps
that order among equal fused scores, so ties (frequent under RRF) go to the higher dense score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum

import numpy as np

from ..core.scores import combine_scores

__all__ = ["RetrievalMode", "Fusion", "coerce_mode", "coerce_fusion", "fuse", "rrf_scores",
           "top_k", "DEFAULT_RRF_K"]

#: the constant of reciprocal rank fusion (Cormack et al., 2009)
DEFAULT_RRF_K = 60


class RetrievalMode(str, Enum):
    """Which scores rank the results.

    ``dense`` and ``sparse`` search the whole index; ``colbert`` and ``hybrid`` re-score the
    union of the dense and sparse candidates.
    """

    HYBRID = "hybrid"
    DENSE = "dense"
    SPARSE = "sparse"
    COLBERT = "colbert"


class Fusion(str, Enum):
    """How ``hybrid`` mode combines the per-mode scores."""

    WEIGHTED = "weighted"
    RRF = "rrf"


def _coerce(enum_cls: type[Enum], value: object, name: str) -> Enum:
    try:
        return enum_cls(value.value if isinstance(value, Enum) else value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in enum_cls)  # type: ignore[attr-defined]
        msg = f"Unknown {name} {value!r}; valid values: {valid}."
        raise ValueError(msg) from None


def coerce_mode(mode: str | RetrievalMode) -> RetrievalMode:
    """``mode`` as a :class:`RetrievalMode`, or a ``ValueError`` listing the valid modes."""
    return _coerce(RetrievalMode, mode, "mode")  # type: ignore[return-value]


def coerce_fusion(fusion: str | Fusion) -> Fusion:
    """``fusion`` as a :class:`Fusion`, or a ``ValueError`` listing the valid values."""
    return _coerce(Fusion, fusion, "fusion")  # type: ignore[return-value]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, best first; ties keep the lower position first.

    Example:
        >>> top_k(np.array([0.1, 0.9, 0.5, 0.9]), 3).tolist()
        [1, 3, 2]
    """
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
    above = np.flatnonzero(scores > kth)
    picked = np.concatenate([above, np.flatnonzero(scores == kth)[: k - len(above)]])
    return picked[np.lexsort((picked, -scores[picked]))]


def _ranks(scores: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks


def rrf_scores(parts: Sequence[np.ndarray], weights: Sequence[float], rrf_k: int) -> np.ndarray:
    """Weighted reciprocal rank fusion of score arrays over the same candidates.

    A ``-inf`` score means "not retrieved by this mode": that candidate gets no term from it.

    Example:
        >>> rrf_scores([np.array([0.9, 0.1]), np.array([0.2, 0.8])], [1.0, 1.0], 60).round(5)
        array([0.03252, 0.03252])
    """
    out = np.zeros(len(parts[0]), dtype=np.float64)
    for scores, weight in zip(parts, weights, strict=False):
        if weight > 0:
            out += np.where(np.isfinite(scores), weight / (rrf_k + _ranks(scores)), 0.0)
    return out


def fuse(mode: RetrievalMode, fusion: Fusion, parts: Mapping[str, np.ndarray],
         weights: Sequence[float], rrf_k: int = DEFAULT_RRF_K) -> np.ndarray:
    """The final score of each candidate from its per-mode scores.

    Args:
        mode: the retrieval mode; single modes return their own score.
        fusion: how ``hybrid`` combines the parts.
        parts: ``"dense"``, ``"sparse"`` and (when stored) ``"colbert"`` score arrays.
        weights: (dense, sparse, colbert) weights, already validated.
        rrf_k: the RRF constant.

    Example:
        >>> parts = {"dense": np.array([0.5]), "sparse": np.array([0.1]),
        ...          "colbert": np.array([0.6])}
        >>> fuse(RetrievalMode.HYBRID, Fusion.WEIGHTED, parts, (0.4, 0.2, 0.4)).round(3)
        array([0.46])
    """
    if mode is not RetrievalMode.HYBRID:
        return parts[mode.value]
    has_colbert = "colbert" in parts
    if fusion is Fusion.RRF:
        lexical = np.where(parts["sparse"] > 0, parts["sparse"], -np.inf)
        ranked = [parts["dense"], lexical, *([parts["colbert"]] if has_colbert else [])]
        return rrf_scores(ranked, weights, rrf_k)
    dense, sparse = parts["dense"], parts["sparse"]
    colbert = parts["colbert"] if has_colbert else np.zeros_like(dense)
    combined = combine_scores(dense, sparse, colbert, weights)
    return combined["colbert+sparse+dense" if has_colbert else "sparse+dense"]
