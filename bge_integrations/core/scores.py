"""BGE-M3 relevance scores in matrix form: dense, lexical (sparse), ColBERT, and their mix.

Every function takes many queries and many passages at once and returns a
``(n_queries, n_passages)`` float32 matrix; the per-pair helpers on ``BGEM3Embedder`` call
these with one row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

__all__ = [
    "SparseVector",
    "DEFAULT_WEIGHTS",
    "dense_scores",
    "lexical_scores",
    "colbert_scores",
    "combine_scores",
    "check_weights",
    "sparse_to_csr",
    "sparse_to_arrays",
]

SparseVector = Mapping[int, float]
#: weights of (dense, sparse, colbert) in the hybrid score, as in the BGE-M3 paper's example
DEFAULT_WEIGHTS = (0.4, 0.2, 0.4)


def check_weights(weights: Sequence[float]) -> tuple[float, float, float]:
    """Validate (dense, sparse, colbert) weights: three non-negative numbers, not all zero."""
    try:
        w = tuple(float(x) for x in weights)
    except (TypeError, ValueError):
        msg = f"weights must be three numbers (dense, sparse, colbert), got {weights!r}."
        raise ValueError(msg) from None
    if len(w) != 3 or any(x < 0 or not np.isfinite(x) for x in w) or sum(w) == 0:
        msg = ("weights must be three finite non-negative numbers (dense, sparse, colbert) "
               f"with a positive sum, got {weights!r}.")
        raise ValueError(msg)
    return w  # type: ignore[return-value]


def dense_scores(queries: np.ndarray, passages: np.ndarray) -> np.ndarray:
    """Inner products of dense vectors, ``(n_q, dim) x (n_p, dim) -> (n_q, n_p)``."""
    q, p = np.atleast_2d(np.asarray(queries, np.float32)), np.atleast_2d(
        np.asarray(passages, np.float32))
    if q.shape[1] != p.shape[1]:
        msg = f"dense dimensions differ: queries {q.shape[1]}, passages {p.shape[1]}."
        raise ValueError(msg)
    return q @ p.T


def sparse_to_csr(vectors: Sequence[SparseVector], vocab_size: int) -> sp.csr_matrix:
    """Token-id -> weight dicts as a ``(n, vocab_size)`` float32 CSR matrix."""
    indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
    for i, vec in enumerate(vectors):
        indptr[i + 1] = indptr[i] + len(vec)
    indices = np.fromiter((int(k) for vec in vectors for k in vec), dtype=np.int64,
                          count=int(indptr[-1]))
    data = np.fromiter((float(v) for vec in vectors for v in vec.values()), dtype=np.float32,
                       count=int(indptr[-1]))
    if indices.size and (indices.min() < 0 or indices.max() >= vocab_size):
        msg = (f"sparse token ids must lie in [0, {vocab_size}); "
               f"got {indices.min()}..{indices.max()}.")
        raise ValueError(msg)
    return sp.csr_matrix((data, indices, indptr), shape=(len(vectors), vocab_size))


def sparse_to_arrays(vector: SparseVector) -> tuple[np.ndarray, np.ndarray]:
    """One sparse vector as sorted ``(indices int64, values float32)`` arrays (Qdrant, Milvus)."""
    indices = np.fromiter((int(k) for k in vector), dtype=np.int64, count=len(vector))
    values = np.fromiter((float(v) for v in vector.values()), dtype=np.float32,
                         count=len(vector))
    order = np.argsort(indices)
    return indices[order], values[order]


def lexical_scores(queries: Sequence[SparseVector], passages: Sequence[SparseVector]
                   ) -> np.ndarray:
    """Sum over shared tokens of ``q_weight * p_weight``, as a sparse matrix product."""
    if not queries or not passages:
        return np.zeros((len(queries), len(passages)), dtype=np.float32)
    width = 1 + max((max(map(int, v), default=0) for v in (*queries, *passages)), default=0)
    q = sparse_to_csr(queries, width)
    p = sparse_to_csr(passages, width)
    return np.asarray((q @ p.T).todense(), dtype=np.float32)


def _check_multivectors(vectors: Sequence[np.ndarray], side: str) -> list[np.ndarray]:
    out = []
    for i, v in enumerate(vectors):
        arr = np.asarray(v, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] == 0:
            msg = (f"{side} ColBERT vectors [{i}] must be a non-empty 2-D array "
                   f"(n_tokens, dim); got shape {arr.shape}.")
            raise ValueError(msg)
        out.append(arr)
    dims = {a.shape[1] for a in out}
    if len(dims) > 1:
        msg = f"{side} ColBERT vectors have different dimensions: {sorted(dims)}."
        raise ValueError(msg)
    return out


def colbert_scores(queries: Sequence[np.ndarray], passages: Sequence[np.ndarray],
                   *, chunk_elems: int = 1 << 24) -> np.ndarray:
    """Late-interaction score: mean over query tokens of the max dot product over passage tokens.

    All query tokens are multiplied with all passage tokens in chunks of passages; maxima are
    taken per passage segment (``np.maximum.reduceat``), then averaged per query.
    """
    qs = _check_multivectors(queries, "query")
    ps = _check_multivectors(passages, "passage")
    if not qs or not ps:
        return np.zeros((len(qs), len(ps)), dtype=np.float32)
    if qs[0].shape[1] != ps[0].shape[1]:
        msg = f"ColBERT dimensions differ: queries {qs[0].shape[1]}, passages {ps[0].shape[1]}."
        raise ValueError(msg)
    q_all = np.concatenate(qs)
    q_starts = np.cumsum([0] + [len(q) for q in qs[:-1]])
    q_counts = np.array([len(q) for q in qs], dtype=np.float32)
    out = np.empty((len(qs), len(ps)), dtype=np.float32)
    start = 0
    while start < len(ps):
        stop, tokens = start, 0
        while stop < len(ps) and (stop == start or (tokens + len(ps[stop])) * len(q_all)
                                  <= chunk_elems):
            tokens += len(ps[stop])
            stop += 1
        block = ps[start:stop]
        p_all = np.concatenate(block)
        p_starts = np.cumsum([0] + [len(p) for p in block[:-1]])
        sims = q_all @ p_all.T  # (total_q_tokens, total_p_tokens)
        best = np.maximum.reduceat(sims, p_starts, axis=1)  # (total_q_tokens, n_block)
        out[:, start:stop] = np.add.reduceat(best, q_starts, axis=0) / q_counts[:, None]
        start = stop
    return out


def combine_scores(dense: np.ndarray, sparse: np.ndarray, colbert: np.ndarray,
                   weights: Sequence[float] = DEFAULT_WEIGHTS) -> dict[str, np.ndarray]:
    """The five score kinds of ``BGEM3FlagModel.compute_score`` from the three base scores.

    ``sparse+dense`` = (w_s*sparse + w_d*dense) / (w_s + w_d);
    ``colbert+sparse+dense`` = (w_c*colbert + w_s*sparse + w_d*dense) / (w_d + w_s + w_c).
    """
    w_d, w_s, w_c = check_weights(weights)
    pair = w_d + w_s
    sparse_dense = (sparse * w_s + dense * w_d) / pair if pair > 0 else np.zeros_like(dense)
    return {
        "dense": dense,
        "sparse": sparse,
        "colbert": colbert,
        "sparse+dense": sparse_dense,
        "colbert+sparse+dense": (colbert * w_c + sparse * w_s + dense * w_d) / (w_d + w_s + w_c),
    }
