"""Validation of encoder outputs before an index stores them.

``add`` checks what the embedder returned and ``add_embeddings`` checks what the caller hands
in with the same functions, so both refuse the same things (wrong shapes, NaN or inf, token
ids outside the vocabulary, negative lexical weights) with a ``ValueError`` that names the
field and the row, before anything changes.

Example:
    >>> import numpy as np
    >>> check_dense(np.ones((2, 4)), n=2, dim=4).dtype
    dtype('float32')
    >>> check_dense(np.full((1, 4), np.nan), n=1, dim=4)
    Traceback (most recent call last):
    ...
    ValueError: dense[0] holds NaN or inf; embeddings must be finite numbers.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["check_dense", "check_sparse", "check_colbert", "sparse_dicts", "EncodedDocs"]


def _real_array(value: object, name: str) -> np.ndarray:
    if isinstance(value, str | bytes | bytearray | memoryview | Mapping):
        msg = f"{name} must be an array of numbers, got {type(value).__name__}."
        raise ValueError(msg)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        msg = f"{name} must be an array of numbers ({exc})."
        raise ValueError(msg) from None
    if array.dtype.kind not in "fiu" or array.dtype == bool:
        msg = f"{name} must hold real numbers, got dtype {array.dtype}."
        raise ValueError(msg)
    return array


def _finite32(array: np.ndarray, name: str, row_name: str) -> np.ndarray:
    with np.errstate(over="ignore"):  # an overflow becomes inf, reported below
        out = np.ascontiguousarray(array, dtype=np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        msg = (f"{row_name.format(row)} holds NaN or inf"
               f"{' after conversion to float32' if array.dtype != np.float32 else ''}; "
               "embeddings must be finite numbers.")
        raise ValueError(msg)
    return out


def check_dense(dense: object, *, n: int, dim: int, name: str = "dense") -> np.ndarray:
    """``dense`` as a C-contiguous float32 ``(n, dim)`` array of finite numbers.

    Raises:
        ValueError: another shape (with the expected one), a non-numeric array, or NaN/inf
            (naming the first bad row).
    """
    array = _real_array(dense, name)
    if array.shape != (n, dim):
        msg = (f"{name} has shape {array.shape}, expected {(n, dim)}: one {dim}-d vector per "
               "text, from the model this index uses.")
        raise ValueError(msg)
    return _finite32(array, name, name + "[{}]")


def _sequence(value: object, n: int, name: str, what: str) -> Sequence:
    if isinstance(value, str | bytes | bytearray | memoryview | Mapping) or not isinstance(
            value, Sequence):
        msg = f"{name} must be a list with one {what} per text, got {type(value).__name__}."
        raise ValueError(msg)
    if len(value) != n:
        msg = f"{name} has {len(value)} entries, expected one {what} per text ({n})."
        raise ValueError(msg)
    return value


def check_sparse(sparse: object, *, n: int, vocab_size: int, name: str = "sparse"
                 ) -> sp.csr_matrix:
    """``sparse`` (one ``{token id: weight}`` dict per text) as a float32 ``(n, vocab)`` CSR.

    Token ids are ints in ``[0, vocab_size)``; weights are finite and not negative (BGE-M3's
    lexical weights are ReLU outputs).

    Raises:
        ValueError: naming the row and the bad entry.
    """
    rows = _sequence(sparse, n, name, "dict of token id -> weight")
    indptr = np.zeros(n + 1, dtype=np.int64)
    indices: list[int] = []
    values: list[float] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            msg = f"{name}[{i}] must be a dict of token id -> weight, got {type(row).__name__}."
            raise ValueError(msg)
        for key, weight in row.items():
            if (not isinstance(key, numbers.Integral) or isinstance(key, bool)
                    or not 0 <= int(key) < vocab_size):
                msg = (f"{name}[{i}] has token id {key!r:.40}; ids must be ints in "
                       f"[0, {vocab_size}) (this model's vocabulary).")
                raise ValueError(msg)
            if (not isinstance(weight, numbers.Real) or isinstance(weight, bool)
                    or not np.isfinite(np.float32(weight)) or weight < 0):
                msg = (f"{name}[{i}][{int(key)}] = {weight!r:.40}; weights must be finite "
                       "numbers >= 0 (as float32).")
                raise ValueError(msg)
            indices.append(int(key))
            values.append(float(weight))
        indptr[i + 1] = len(indices)
    matrix = sp.csr_matrix((np.asarray(values, dtype=np.float32),
                            np.asarray(indices, dtype=np.int32), indptr),
                           shape=(n, vocab_size))
    matrix.sort_indices()
    return matrix


def sparse_dicts(matrix: sp.csr_matrix) -> list[dict[int, float]]:
    """The rows of a CSR matrix as ``{token id: weight}`` dicts, the inverse of
    :func:`check_sparse` (float32 weights, exactly).

    Example:
        >>> sparse_dicts(check_sparse([{3: 0.5}, {}], n=2, vocab_size=5))
        [{3: 0.5}, {}]
    """
    ptr, indices, data = matrix.indptr, matrix.indices.tolist(), matrix.data.tolist()
    return [dict(zip(indices[ptr[i]:ptr[i + 1]], data[ptr[i]:ptr[i + 1]], strict=True))
            for i in range(matrix.shape[0])]


def check_colbert(colbert: object, *, n: int, dim: int, name: str = "colbert"
                  ) -> list[np.ndarray]:
    """``colbert`` as one float32 ``(n_tokens > 0, dim)`` array of finite numbers per text.

    Raises:
        ValueError: naming the row whose array is wrong.
    """
    rows = _sequence(colbert, n, name, f"(n_tokens, {dim}) array")
    out = []
    for i, row in enumerate(rows):
        array = _real_array(row, f"{name}[{i}]")
        if array.ndim != 2 or array.shape[1] != dim or not len(array):
            msg = (f"{name}[{i}] has shape {array.shape}, expected (n_tokens > 0, {dim}): one "
                   f"{dim}-d vector per token.")
            raise ValueError(msg)
        out.append(_finite32(array, name, f"{name}[{i}]" + "[{}]"))
    return out


class EncodedDocs:
    """Checked dense, sparse and (optionally) ColBERT vectors of ``n`` documents.

    Attributes:
        dense: float32 ``(n, dim)``.
        sparse: float32 ``(n, vocab_size)`` CSR.
        colbert: per document a float32 ``(n_tokens, dim)`` array, or ``None`` when the index
            stores none.

    Example:
        >>> docs = EncodedDocs.build(np.ones((1, 2)), [{0: 1.0}], [np.ones((3, 2))],
        ...                          n=1, dim=2, vocab_size=5, colbert=True)
        >>> docs.sparse.shape, docs.colbert[0].shape
        ((1, 5), (3, 2))
    """

    __slots__ = ("dense", "sparse", "colbert")

    def __init__(self, dense: np.ndarray, sparse: sp.csr_matrix,
                 colbert: list[np.ndarray] | None) -> None:
        self.dense, self.sparse, self.colbert = dense, sparse, colbert

    @classmethod
    def build(cls, dense: object, sparse: object, colbert: object, *, n: int, dim: int,
              vocab_size: int, store_colbert: bool, prefix: str = "") -> EncodedDocs:
        """Check the three outputs for ``n`` texts; ``prefix`` starts the field names in errors.

        ``colbert`` may be ``None`` only when the index stores no ColBERT vectors
        (``store_colbert=False``); given to such an index it is checked, then dropped.
        """
        checked_dense = check_dense(dense, n=n, dim=dim, name=prefix + "dense")
        checked_sparse = check_sparse(sparse, n=n, vocab_size=vocab_size, name=prefix + "sparse")
        if colbert is None:
            if store_colbert:
                msg = (f"{prefix}colbert is None, but this index stores ColBERT vectors "
                       "(store_colbert=True); pass one (n_tokens, dim) array per text.")
                raise ValueError(msg)
            return cls(checked_dense, checked_sparse, None)
        checked_colbert = check_colbert(colbert, n=n, dim=dim, name=prefix + "colbert")
        return cls(checked_dense, checked_sparse, checked_colbert if store_colbert else None)
