"""Row stores of the embedded index: growable arrays, the sparse inverted index, ColBERT files.

Every store is addressed by row number (the order documents were added); the index keeps the
stores aligned and compacts them together.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.sparse as sp

__all__ = ["GrowArray", "SparseRows", "ColbertStore", "COLBERT_DTYPES"]

#: accepted ``colbert_dtype`` values
COLBERT_DTYPES = ("float32", "float16")
#: token vectors copied per step when writing a ColBERT file
_COPY_TOKENS = 1 << 16
#: rows added since the last inverted-index build, scored directly until there are this many
_MIN_TAIL_ROWS = 2048


class GrowArray:
    """An array that grows at its end with amortised O(1) appends (capacity doubling).

    Example:
        >>> a = GrowArray((2,), np.float32)
        >>> a.extend(np.ones((3, 2)))
        >>> a.view.shape
        (3, 2)
    """

    def __init__(self, row_shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self._buf = np.empty((16, *row_shape), dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def view(self) -> np.ndarray:
        """The filled rows (a view, valid until the next change)."""
        return self._buf[: self._n]

    def extend(self, rows: np.ndarray) -> None:
        """Append rows (cast to the array's dtype)."""
        need = self._n + len(rows)
        if need > len(self._buf):
            grown = np.empty((max(need, 2 * len(self._buf)), *self._buf.shape[1:]),
                             dtype=self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n: need] = rows
        self._n = need

    def replace(self, rows: np.ndarray) -> None:
        """Drop the content and hold ``rows`` instead."""
        self._n = 0
        self.extend(rows)


class SparseRows:
    """Sparse (lexical) vectors of every row, searched through an inverted index.

    The inverted index is the ``(vocab, rows)`` CSR transpose, so a query touches only the
    posting lists of its own tokens. Rows added since it was built (the tail) are scored
    directly; when the tail outgrows an eighth of the index, both are merged and re-inverted.

    Example:
        >>> rows = SparseRows(10)
        >>> rows.extend(sp.csr_matrix(np.array([[0, 1.0, 0, 0, 0, 0, 0, 0, 0, 2.0]])))
        >>> rows.scores(sp.csr_matrix(np.array([[0, 3.0, 0, 0, 0, 0, 0, 0, 0, 1.0]]))).tolist()
        [[5.0]]
    """

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self._main = sp.csr_matrix((0, vocab_size), dtype=np.float32)
        self._inverted = self._main.T.tocsr()
        self._tail: list[sp.csr_matrix] = []
        self._tail_rows = 0

    def __len__(self) -> int:
        return self._main.shape[0] + self._tail_rows

    def extend(self, rows: sp.csr_matrix) -> None:
        """Append rows of a ``(n, vocab_size)`` CSR matrix."""
        self._tail.append(rows.astype(np.float32))
        self._tail_rows += rows.shape[0]
        if self._tail_rows > max(_MIN_TAIL_ROWS, self._main.shape[0] // 8):
            self.replace(self.matrix())
        elif len(self._tail) > 1:
            self._tail = [sp.vstack(self._tail, format="csr")]

    def replace(self, matrix: sp.csr_matrix) -> None:
        """Hold exactly the rows of ``matrix`` and rebuild the inverted index."""
        self._main = sp.csr_matrix(matrix, dtype=np.float32)
        self._inverted = self._main.T.tocsr()
        self._tail, self._tail_rows = [], 0

    def matrix(self, rows: np.ndarray | None = None) -> sp.csr_matrix:
        """All rows (or the given ones) as one CSR matrix."""
        full = sp.vstack([self._main, *self._tail], format="csr") if self._tail else self._main
        return full if rows is None else full[rows]

    def scores(self, queries: sp.csr_matrix) -> np.ndarray:
        """Lexical scores ``(n_queries, rows)``: sums of weight products over shared tokens."""
        out = np.zeros((queries.shape[0], len(self)), dtype=np.float32)
        main_rows = self._main.shape[0]
        if main_rows:
            out[:, :main_rows] = (queries @ self._inverted).toarray()
        if self._tail:
            out[:, main_rows:] = (self._tail[0] @ queries.T).T.toarray()
        return out


def _close_and_remove(handle: BinaryIO, path: str) -> None:
    handle.close()
    try:
        os.remove(path)
    except OSError:  # still mapped on Windows; the temp directory is cleaned by the OS
        pass


class ColbertStore:
    """ColBERT token vectors of every row in memory-mapped files, read per row on demand.

    New vectors go to one temporary append-only file (in ``directory``, default the system
    temp dir) removed when the store is garbage-collected; a loaded index maps its saved file
    read-only. Each row is a (file, start, length) address. Adding is two steps: ``stage``
    writes the vectors, ``extend`` makes them rows, so a failed ``add`` never half-adds.
    Vectors of deleted rows stay in the files until the index is saved and loaded again.

    Example:
        >>> store = ColbertStore(4, "float16")
        >>> store.extend(store.stage([np.ones((2, 4)), np.ones((3, 4))]))
        >>> [v.shape for v in store.gather(np.array([1, 0]))]
        [(3, 4), (2, 4)]
    """

    def __init__(self, dim: int, dtype: str, directory: str | os.PathLike | None = None) -> None:
        if dtype not in COLBERT_DTYPES:
            msg = f"colbert_dtype must be one of {COLBERT_DTYPES}, got {dtype!r}."
            raise ValueError(msg)
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        self._directory = directory
        self._files: list[np.ndarray] = []
        self._live: int | None = None
        self._handle: BinaryIO | None = None
        self._path = ""
        self._tokens = 0
        self._address = GrowArray((3,), np.int64)  # (file, start, length) per row

    def __len__(self) -> int:
        return len(self._address)

    def attach(self, path: Path, offsets: np.ndarray) -> None:
        """Append the rows of a saved ``.npy`` file (rows ``i`` = ``offsets[i]:offsets[i+1]``)."""
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if array.ndim != 2 or array.shape[1] != self.dim or array.dtype != self.dtype:
            msg = (f"{path.name} holds {array.dtype} {array.shape}, expected "
                   f"{self.dtype} (tokens, {self.dim}).")
            raise ValueError(msg)
        if offsets[0] != 0 or offsets[-1] != len(array) or np.any(np.diff(offsets) <= 0):
            msg = f"ColBERT offsets do not split the {len(array)} vectors of {path.name} into rows."
            raise ValueError(msg)
        self._files.append(array.view(np.ndarray))  # plain views slice much faster than memmaps
        file = np.full(len(offsets) - 1, len(self._files) - 1, dtype=np.int64)
        self._address.extend(np.stack([file, offsets[:-1], np.diff(offsets)], axis=1))

    def stage(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        """Write one ``(n_tokens, dim)`` array per document; return their row addresses."""
        for i, v in enumerate(vectors):
            if v.ndim != 2 or v.shape[1] != self.dim or not len(v):
                msg = (f"ColBERT vectors [{i}] must have shape (n_tokens > 0, {self.dim}), "
                       f"got {v.shape}.")
                raise ValueError(msg)
        if self._handle is None:
            fd, self._path = tempfile.mkstemp(prefix="bge-colbert-", suffix=".bin",
                                              dir=self._directory)
            self._handle = os.fdopen(fd, "wb")
            weakref.finalize(self, _close_and_remove, self._handle, self._path)
            self._files.append(np.empty((0, self.dim), self.dtype))
            self._live = len(self._files) - 1
        lengths = np.fromiter((len(v) for v in vectors), dtype=np.int64, count=len(vectors))
        starts = self._tokens + np.concatenate(([0], np.cumsum(lengths)[:-1]))
        for v in vectors:
            self._handle.write(np.ascontiguousarray(v, dtype=self.dtype).tobytes())
        self._handle.flush()
        self._tokens += int(lengths.sum())
        self._files[self._live] = np.memmap(self._path, dtype=self.dtype, mode="r",
                                            shape=(self._tokens, self.dim)).view(np.ndarray)
        return np.stack([np.full(len(vectors), self._live), starts, lengths], axis=1)

    def extend(self, addresses: np.ndarray) -> None:
        """Make staged vectors the next rows."""
        self._address.extend(addresses)

    def keep(self, rows: np.ndarray) -> None:
        """Keep only ``rows``, renumbered in order (the vectors themselves stay in place)."""
        self._address.replace(self._address.view[rows])

    def gather(self, rows: np.ndarray) -> list[np.ndarray]:
        """The float32 vectors of the given rows."""
        return [np.asarray(self._files[f][s: s + n], dtype=np.float32)
                for f, s, n in self._address.view[rows].tolist()]

    def write(self, path: Path, rows: np.ndarray) -> np.ndarray:
        """Write the given rows' vectors, in order, to one ``.npy`` file; return the offsets."""
        addresses = self._address.view[rows]
        offsets = np.concatenate(([0], np.cumsum(addresses[:, 2]))).astype(np.int64)
        out = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype,
                                        shape=(int(offsets[-1]), self.dim))
        for (f, s, n), pos in zip(addresses.tolist(), offsets.tolist()):
            for lo in range(0, n, _COPY_TOKENS):
                hi = min(n, lo + _COPY_TOKENS)
                out[pos + lo: pos + hi] = self._files[f][s + lo: s + hi]
        out.flush()
        del out
        return offsets
