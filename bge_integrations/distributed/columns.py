"""The output columns of :func:`~.embed.embed_dataset` and their Arrow layout, both ways.

Arrow types (Parquet keeps them):

* ``embedding``: ``fixed_size_list<float32 | float16>[dim]``, one dense vector per row;
* ``sparse_indices`` / ``sparse_values``: ``list<int32>`` / ``list<float32>``, a BGE-M3 lexical
  vector as token ids in ascending order and their weights;
* ``colbert``: ``list<fixed_size_list<float32 | float16>[dim]>``, one vector per token;
* ``num_tokens``: ``int32``, tokens the model read (after truncation);
* ``error``: ``string``, why a row was not embedded (``on_error="collect"``; null when it was).

A row that was not embedded holds nulls in every output column. Readers accept plain
``list`` columns too (what other Parquet writers produce).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..core.scores import SparseVector, sparse_to_arrays

__all__ = ["EMBEDDING", "SPARSE_INDICES", "SPARSE_VALUES", "COLBERT", "NUM_TOKENS", "ERROR",
           "OUTPUT_COLUMNS", "dense_column", "sparse_columns", "colbert_column", "dense_matrix",
           "sparse_dicts", "colbert_arrays", "refuse_unembedded", "row_ids", "metadata_names",
           "token_total"]

EMBEDDING = "embedding"
SPARSE_INDICES = "sparse_indices"
SPARSE_VALUES = "sparse_values"
COLBERT = "colbert"
NUM_TOKENS = "num_tokens"
ERROR = "error"
#: every column embed_dataset may add; input columns with these names are refused
OUTPUT_COLUMNS = (EMBEDDING, SPARSE_INDICES, SPARSE_VALUES, COLBERT, NUM_TOKENS, ERROR)

_ARROW_FLOATS = {np.dtype(np.float32): pa.float32(), np.dtype(np.float16): pa.float16()}


def _mask(valid: np.ndarray) -> pa.Array | None:
    """Arrow's null mask (True = null), or None when every row is valid."""
    return None if valid.all() else pa.array(~valid)


def dense_column(vectors: np.ndarray, valid: np.ndarray) -> pa.Array:
    """``vectors`` ``(n, dim)`` as a fixed-size-list column; rows where ``~valid`` are null."""
    values = pa.array(np.ascontiguousarray(vectors).reshape(-1),
                      type=_ARROW_FLOATS[vectors.dtype])
    return pa.FixedSizeListArray.from_arrays(values, vectors.shape[1], mask=_mask(valid))


def _offsets(lengths: Sequence[int]) -> pa.Array:
    return pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32))


def sparse_columns(rows: Sequence[SparseVector | None]) -> tuple[pa.Array, pa.Array]:
    """Sparse vectors (None for rows not embedded) as ``sparse_indices``, ``sparse_values``."""
    pairs = [sparse_to_arrays(r) if r is not None else (np.zeros(0, np.int64),
                                                           np.zeros(0, np.float32))
             for r in rows]
    valid = np.array([r is not None for r in rows], dtype=bool)
    offsets = _offsets([len(i) for i, _ in pairs])
    flat_ids = np.concatenate([i for i, _ in pairs]) if pairs else np.zeros(0, np.int64)
    flat_vals = np.concatenate([v for _, v in pairs]) if pairs else np.zeros(0, np.float32)
    mask = _mask(valid)
    return (pa.ListArray.from_arrays(offsets, pa.array(flat_ids.astype(np.int32)), mask=mask),
            pa.ListArray.from_arrays(offsets, pa.array(flat_vals.astype(np.float32)),
                                     mask=mask))


def colbert_column(rows: Sequence[np.ndarray | None], dim: int, dtype: np.dtype) -> pa.Array:
    """Per-row ``(n_tokens, dim)`` token vectors (None for rows not embedded) as a column."""
    arrays = [r.astype(dtype, copy=False) if r is not None else np.zeros((0, dim), dtype)
              for r in rows]
    valid = np.array([r is not None for r in rows], dtype=bool)
    flat = np.concatenate(arrays) if arrays else np.zeros((0, dim), dtype)
    vectors = dense_column(flat, np.ones(len(flat), dtype=bool))
    return pa.ListArray.from_arrays(_offsets([len(a) for a in arrays]), vectors,
                                    mask=_mask(valid))


def _flat(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _list_values(column: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Offsets and child values of a (fixed-size) list column, slicing honoured."""
    if pa.types.is_fixed_size_list(column.type):
        size = column.type.list_size
        start = column.offset * size
        offsets = start + size * np.arange(len(column) + 1, dtype=np.int64)
        return offsets, column.values
    return column.offsets.to_numpy().astype(np.int64), column.values


def dense_matrix(column: pa.Array | pa.ChunkedArray, dtype: Any = np.float32) -> np.ndarray:
    """An ``embedding`` column as an ``(n, dim)`` array (every row must hold a vector).

    Example:
        >>> dense_matrix(pa.array([[1.0, 0.0], [0.0, 1.0]])).shape
        (2, 2)
    """
    column = _flat(column)
    if column.null_count:
        msg = (f"{column.null_count} rows have no embedding (rows that failed with "
               "on_error='collect'); filter them out first, e.g. "
               "ds.filter(expr='error IS NULL').")
        raise ValueError(msg)
    offsets, values = _list_values(column)
    if len(column) == 0:
        return np.zeros((0, 0), dtype)
    lengths = np.diff(offsets)
    if (lengths != lengths[0]).any():
        msg = "the embedding column holds vectors of different lengths."
        raise ValueError(msg)
    flat = values.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy(zero_copy_only=False)
    return flat.astype(dtype, copy=False).reshape(len(column), int(lengths[0]))


def sparse_dicts(indices: pa.Array | pa.ChunkedArray, values: pa.Array | pa.ChunkedArray
                 ) -> list[dict[int, float]]:
    """``sparse_indices`` / ``sparse_values`` columns as token id -> weight dicts."""
    idx_off, idx_vals = _list_values(_flat(indices))
    _, val_vals = _list_values(_flat(values))
    ids = idx_vals.to_numpy(zero_copy_only=False)
    weights = val_vals.to_numpy(zero_copy_only=False)
    return [dict(zip(ids[lo:hi].tolist(), weights[lo:hi].astype(np.float32).tolist(), strict=False))
            for lo, hi in zip(idx_off[:-1], idx_off[1:], strict=False)]


def colbert_arrays(column: pa.Array | pa.ChunkedArray, dtype: Any = np.float32
                   ) -> list[np.ndarray]:
    """A ``colbert`` column as one ``(n_tokens, dim)`` array per row."""
    column = _flat(column)
    offsets, vectors = _list_values(column)
    matrix = dense_matrix(vectors.slice(offsets[0], offsets[-1] - offsets[0]), dtype) if len(
        column) else np.zeros((0, 0), dtype)
    base = offsets[0]
    return [matrix[lo - base: hi - base] for lo, hi in zip(offsets[:-1], offsets[1:], strict=False)]


# -- what the sinks share ---------------------------------------------------------------------
def refuse_unembedded(batch: pa.Table) -> None:
    """A ``ValueError`` naming the first row that has an ``error`` (it has no outputs)."""
    if ERROR not in batch.column_names or batch.column(ERROR).null_count == len(batch):
        return
    error = next(e for e in batch.column(ERROR).to_pylist() if e is not None)
    msg = (f"{error}: that row was not embedded, so it cannot be written; drop the rows with "
           "an error first, e.g. ds.filter(lambda r: r['error'] is None).")
    raise ValueError(msg)


def row_ids(batch: pa.Table, id_column: str) -> list[Any]:
    """The id column as strings (ints become their decimal form; None stays, to be refused)."""
    return [v if isinstance(v, str) or v is None else str(v)
            for v in batch.column(id_column).to_pylist()]


def metadata_names(names: Sequence[str], id_column: str, text_column: str,
                   chosen: Sequence[str] | None) -> list[str]:
    """The metadata columns: ``chosen`` (checked), else every input column but id and text."""
    if chosen is None:
        return [n for n in names if n not in OUTPUT_COLUMNS and n not in (id_column, text_column)]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        msg = f"metadata_columns {unknown} are not columns of the dataset ({', '.join(names)})."
        raise ValueError(msg)
    return list(chosen)


def token_total(batch: pa.Table) -> int | None:
    """Sum of ``num_tokens`` over the batch, None without that column."""
    if NUM_TOKENS not in batch.column_names:
        return None
    return int(batch.column(NUM_TOKENS).to_numpy(zero_copy_only=False).sum())
