"""Row stores of the embedded index, as immutable snapshots.

Every store is addressed by row number (the order documents were added). A change never
edits a store that a published snapshot can see: it returns a new store object, so a writer
builds the next state of the index aside and publishes it with one assignment, and an
exception or ``KeyboardInterrupt`` anywhere before that leaves the previous state whole.
Appends stay amortised O(1): :class:`Rows` handles share a buffer and write only past the
end of every handle already handed out; a handle that would overwrite rows someone else may
see copies the buffer instead.

ColBERT vectors added in memory go to a temporary *spill* file that is unlinked as soon as
it is opened (``tempfile.TemporaryFile``): nothing is left behind when the process is killed.
Vectors are written with ordinary positional writes at the store's logical end, so a failed
write (interrupt, full disk) leaves no offset out of step; they are read back through a
read-only memory map. Dead vectors in the spill file are reclaimed by rewriting it once they
outnumber the live ones (:data:`SPILL_SLACK_TOKENS` aside), so the file never holds more than
``2 x live tokens + SPILL_SLACK_TOKENS`` token vectors, however many upserts and deletes ran.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp

__all__ = ["Rows", "SparseRows", "ColbertRows", "ColbertSpill", "COLBERT_DTYPES",
           "SPILL_SLACK_TOKENS", "object_rows"]

#: accepted ``colbert_dtype`` values
COLBERT_DTYPES = ("float32", "float16")
#: token vectors copied per step when writing or compacting ColBERT vectors
_COPY_TOKENS = 1 << 16
#: rows added since the last inverted-index build, scored directly until there are this many
_MIN_TAIL_ROWS = 2048
#: dead token vectors the spill file may hold beyond as many as it has live ones
SPILL_SLACK_TOKENS = 4096


class _Buffer:
    """The array behind :class:`Rows` handles and how many of its rows were handed out."""

    __slots__ = ("data", "used")

    def __init__(self, data: np.ndarray, used: int) -> None:
        self.data, self.used = data, used


class Rows:
    """The first ``n`` rows of an append-only buffer; :meth:`appended` returns a new handle.

    Example:
        >>> a = Rows((2,), np.float32)
        >>> b = a.appended(np.ones((3, 2)))
        >>> len(a), b.view.shape
        (0, (3, 2))
    """

    __slots__ = ("_buffer", "_n")

    def __init__(self, row_shape: tuple[int, ...], dtype: Any) -> None:
        self._buffer = _Buffer(np.empty((16, *row_shape), dtype=dtype), 0)
        self._n = 0

    @classmethod
    def of(cls, array: np.ndarray) -> Rows:
        """A handle on ``array`` (not copied: it must not change afterwards)."""
        rows = cls.__new__(cls)
        rows._buffer, rows._n = _Buffer(array, len(array)), len(array)
        return rows

    def __len__(self) -> int:
        return self._n

    @property
    def view(self) -> np.ndarray:
        """The rows (read-only by convention: never write through it)."""
        return self._buffer.data[: self._n]

    def appended(self, rows: np.ndarray) -> Rows:
        """These rows plus ``rows`` (cast to the dtype), leaving this handle as it was."""
        buffer, n = self._buffer, self._n
        need = n + len(rows)
        if buffer.used == n and need <= len(buffer.data):
            buffer.data[n:need] = rows  # past every handle handed out: nobody sees these rows
            buffer.used = need
            out = Rows.__new__(Rows)
            out._buffer, out._n = buffer, need
            return out
        grown = np.empty((max(need, 2 * n, 16), *buffer.data.shape[1:]), dtype=buffer.data.dtype)
        grown[:n] = buffer.data[:n]
        grown[n:need] = rows
        out = Rows.__new__(Rows)
        out._buffer, out._n = _Buffer(grown, need), need
        return out

    def taken(self, rows: np.ndarray) -> Rows:
        """A new buffer holding only ``rows`` of these, in that order."""
        return Rows.of(self.view[rows])


def object_rows(values: Sequence[Any]) -> np.ndarray:
    """``values`` as a 1-d object array, element by element (lists and dicts stay whole).

    Example:
        >>> object_rows([{"a": 1}, ["x"]]).shape
        (2,)
    """
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


class SparseRows:
    """Sparse (lexical) vectors of every row, searched through an inverted index; immutable.

    The inverted index is the ``(vocab, rows)`` CSR transpose, so a query touches only the
    posting lists of its own tokens. Rows added since it was built (the tail) are scored
    directly; when the tail outgrows an eighth of the index, both are merged and re-inverted.

    Example:
        >>> rows = SparseRows(10).extended(
        ...     sp.csr_matrix(np.array([[0, 1.0, 0, 0, 0, 0, 0, 0, 0, 2.0]])))
        >>> rows.scores(sp.csr_matrix(np.array([[0, 3.0, 0, 0, 0, 0, 0, 0, 0, 1.0]]))).tolist()
        [[5.0]]
    """

    __slots__ = ("vocab_size", "_main", "_inverted", "_tail")

    def __init__(self, vocab_size: int, matrix: sp.csr_matrix | None = None) -> None:
        self.vocab_size = vocab_size
        self._main = (sp.csr_matrix((0, vocab_size), dtype=np.float32) if matrix is None
                      else sp.csr_matrix(matrix, dtype=np.float32))
        self._inverted = self._main.T.tocsr()
        self._tail: sp.csr_matrix | None = None

    def __len__(self) -> int:
        return self._main.shape[0] + (0 if self._tail is None else self._tail.shape[0])

    def extended(self, rows: sp.csr_matrix) -> SparseRows:
        """These rows followed by the rows of a ``(n, vocab_size)`` CSR matrix."""
        rows = sp.csr_matrix(rows, dtype=np.float32)
        tail = rows if self._tail is None else sp.vstack([self._tail, rows], format="csr")
        if tail.shape[0] > max(_MIN_TAIL_ROWS, self._main.shape[0] // 8):
            return SparseRows(self.vocab_size, sp.vstack([self._main, tail], format="csr"))
        out = SparseRows.__new__(SparseRows)
        out.vocab_size, out._main, out._inverted, out._tail = (
            self.vocab_size, self._main, self._inverted, tail)
        return out

    def matrix(self, rows: np.ndarray | None = None) -> sp.csr_matrix:
        """All rows (or the given ones) as one CSR matrix."""
        full = (self._main if self._tail is None
                else sp.vstack([self._main, self._tail], format="csr"))
        return full if rows is None else full[rows]

    def scores(self, queries: sp.csr_matrix) -> np.ndarray:
        """Lexical scores ``(n_queries, rows)``: sums of weight products over shared tokens."""
        out = np.zeros((queries.shape[0], len(self)), dtype=np.float32)
        main_rows = self._main.shape[0]
        if main_rows:
            out[:, :main_rows] = (queries @ self._inverted).toarray()
        if self._tail is not None:
            out[:, main_rows:] = (self._tail @ queries.T).T.toarray()
        return out


def _write_at(handle: BinaryIO, offset: int, data: memoryview) -> None:
    """Write all of ``data`` at ``offset`` with ordinary writes (never through a map)."""
    if hasattr(os, "pwrite"):
        fd = handle.fileno()
        while len(data):
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written
        return
    handle.seek(offset)  # Windows: no pwrite; writers are serialised by the index
    handle.write(data)
    handle.flush()


class ColbertSpill:
    """An anonymous temporary file of token vectors: unlinked at once, written positionally.

    ``tempfile.TemporaryFile`` removes the name before returning (POSIX) or deletes the file
    when it is closed (Windows), so a killed process leaves nothing behind. Memory maps taken
    by :meth:`view` keep their own reference to the file.

    Example:
        >>> spill = ColbertSpill(4, np.dtype("float32"))
        >>> spill.write(0, [np.ones((2, 4))])
        2
        >>> spill.view(2).shape
        (2, 4)
    """

    def __init__(self, dim: int, dtype: np.dtype, directory: str | os.PathLike | None = None
                 ) -> None:
        self.dim, self.dtype = dim, dtype
        self._handle = tempfile.TemporaryFile(prefix="bge-colbert-", suffix=".bin",
                                              dir=directory)

    def write(self, start: int, vectors: Sequence[np.ndarray]) -> int:
        """Write ``vectors`` one after another from token ``start``; return the tokens written."""
        row_bytes = self.dim * self.dtype.itemsize
        offset = start
        for v in vectors:
            block = np.ascontiguousarray(v, dtype=self.dtype)
            _write_at(self._handle, offset * row_bytes, memoryview(block).cast("B"))
            offset += len(block)
        return offset - start

    def view(self, tokens: int) -> np.ndarray:
        """The first ``tokens`` vectors, read-only, through a memory map."""
        if not tokens:
            return np.empty((0, self.dim), dtype=self.dtype)
        mapped = mmap.mmap(self._handle.fileno(), tokens * self.dim * self.dtype.itemsize,
                           access=mmap.ACCESS_READ)
        return np.frombuffer(mapped, dtype=self.dtype).reshape(tokens, self.dim)

    def size(self) -> int:
        """Bytes in the file (what a failed write left past the logical end included)."""
        return os.fstat(self._handle.fileno()).st_size


class ColbertRows:
    """ColBERT token vectors of every row, read per row on demand; immutable.

    Each row has a (file, start, length) address. Files are memory maps of saved ``.npy``
    files (read-only) and, for vectors added in memory, one :class:`ColbertSpill`.

    Example:
        >>> store = ColbertRows(4, "float16").appended([np.ones((2, 4)), np.ones((3, 4))])
        >>> [v.shape for v in store.gather(np.array([1, 0]))]
        [(3, 4), (2, 4)]
    """

    __slots__ = ("dim", "dtype", "_directory", "_files", "_address", "_spill", "_slot",
                 "_spill_tokens")

    def __init__(self, dim: int, dtype: str, directory: str | os.PathLike | None = None) -> None:
        if dtype not in COLBERT_DTYPES:
            msg = f"colbert_dtype must be one of {COLBERT_DTYPES}, got {dtype!r}."
            raise ValueError(msg)
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        self._directory = directory
        self._files: tuple[np.ndarray, ...] = ()
        self._address = Rows((3,), np.int64)  # (file, start, length) per row
        self._spill: ColbertSpill | None = None
        self._slot = -1
        self._spill_tokens = 0

    def _copy(self, **changes: Any) -> ColbertRows:
        out = ColbertRows.__new__(ColbertRows)
        for name in self.__slots__:
            setattr(out, name, changes.get(name.lstrip("_"), getattr(self, name)))
        return out

    def __len__(self) -> int:
        return len(self._address)

    @property
    def spill_tokens(self) -> int:
        """Token vectors in the spill file, dead ones included."""
        return self._spill_tokens

    def spill_live_tokens(self, alive: np.ndarray) -> int:
        """Token vectors in the spill file that belong to live rows."""
        address = self._address.view
        return int(address[alive & (address[:, 0] == self._slot), 2].sum())

    def loaded(self, array: np.ndarray, offsets: np.ndarray) -> ColbertRows:
        """These rows followed by those of a saved file (row ``i`` = ``offsets[i]:offsets[i+1]``).

        ``offsets`` must already be checked (non-decreasing from 0 to ``len(array)``).
        """
        files = (*self._files, array)
        file = np.full(len(offsets) - 1, len(files) - 1, dtype=np.int64)
        rows = np.stack([file, offsets[:-1], offsets[1:] - offsets[:-1]], axis=1)
        return self._copy(files=files, address=self._address.appended(rows))

    def appended(self, vectors: Sequence[np.ndarray]) -> ColbertRows:
        """These rows followed by one ``(n_tokens, dim)`` array per new row (checked before)."""
        spill, slot, files = self._spill, self._slot, self._files
        if spill is None:
            spill, slot, files = (ColbertSpill(self.dim, self.dtype, self._directory),
                                  len(files), (*files, np.empty((0, self.dim), self.dtype)))
        start = self._spill_tokens
        written = spill.write(start, vectors)
        lengths = np.fromiter((len(v) for v in vectors), dtype=np.int64, count=len(vectors))
        starts = start + np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        rows = np.stack([np.full(len(vectors), slot, dtype=np.int64), starts, lengths], axis=1)
        tokens = start + written
        files = (*files[:slot], spill.view(tokens), *files[slot + 1:])
        return self._copy(files=files, address=self._address.appended(rows), spill=spill,
                          slot=slot, spill_tokens=tokens)

    def taken(self, rows: np.ndarray) -> ColbertRows:
        """Only ``rows``, renumbered in order (their vectors stay where they are)."""
        return self._copy(address=self._address.taken(rows))

    def settled(self, alive: np.ndarray) -> ColbertRows:
        """These rows, with the spill file rewritten if its dead vectors outnumber the live
        ones by more than :data:`SPILL_SLACK_TOKENS`."""
        live = self.spill_live_tokens(alive)
        if self._spill is None or self._spill_tokens - live <= max(live, SPILL_SLACK_TOKENS):
            return self
        address = self._address.view.copy()
        moved = np.flatnonzero(alive & (address[:, 0] == self._slot))
        spill = ColbertSpill(self.dim, self.dtype, self._directory)
        source, pos = self._files[self._slot], 0
        for row in moved.tolist():
            _, s, n = address[row].tolist()
            spill.write(pos, [source[s: s + n]])
            address[row, 1] = pos
            pos += n
        dead = (address[:, 0] == self._slot) & ~alive
        address[dead, 1:] = 0  # never read: dead rows are neither searched nor saved
        files = (*self._files[:self._slot], spill.view(pos), *self._files[self._slot + 1:])
        return self._copy(files=files, address=Rows.of(address), spill=spill, spill_tokens=pos)

    def gather(self, rows: np.ndarray) -> list[np.ndarray]:
        """The float32 vectors of the given rows."""
        return [np.asarray(self._files[f][s: s + n], dtype=np.float32)
                for f, s, n in self._address.view[rows].tolist()]

    def write_npy(self, handle: BinaryIO, rows: np.ndarray) -> np.ndarray:
        """Write the given rows' vectors, in order, as one ``.npy`` file; return the offsets.

        Plain ``write`` calls only: a full disk raises ``OSError`` here, it cannot fault a
        memory map.
        """
        addresses = self._address.view[rows]
        offsets = np.concatenate(([0], np.cumsum(addresses[:, 2]))).astype(np.int64)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (int(offsets[-1]), self.dim)}
        np.lib.format.write_array_header_1_0(handle, header)
        for f, s, n in addresses.tolist():
            for lo in range(0, n, _COPY_TOKENS):
                block = np.ascontiguousarray(self._files[f][s + lo: s + min(n, lo + _COPY_TOKENS)])
                handle.write(memoryview(block).cast("B"))
        return offsets
