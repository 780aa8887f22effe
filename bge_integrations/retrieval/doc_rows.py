"""The document rows both embedded indexes hold: ids, texts, metadata, which rows are live.

An index state (:class:`~.index.HybridIndex`'s and :class:`~.dense.DenseIndex`'s) extends
:class:`DocRows` with its vector stores, all aligned by row. Rows are only ever appended
(:class:`~.storage.Rows` shares one buffer between states), an upsert or a delete marks the old
row dead, and dead rows are purged once they outnumber the live ones: so an ``add`` costs
O(batch) amortised plus one C-level copy of the id map, however large the index, and every
state stays immutable once published.

Example:
    >>> from bge_integrations.retrieval.contract import DocBatch
    >>> rows = DocRows.empty_fields()
    >>> state = DocRows(**rows)
    >>> state = DocRows(**state.appended_fields(DocBatch.build(["a", "b"], ids=["1", "2"])))
    >>> state = DocRows(**state.appended_fields(DocBatch.build(["c"], ids=["1"])))
    >>> state.live_rows().tolist(), state.row_of
    ([1, 2], {'1': 2, '2': 1})
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .contract import DocBatch, EmbeddingBatch, Record
from .storage import Rows, object_rows

__all__ = ["DocRows", "COMPACT_MIN_DEAD"]

#: dead rows are purged once there are at least this many and more than live rows
COMPACT_MIN_DEAD = 1024


@dataclass(frozen=True)
class DocRows:
    """Ids, texts and metadata by row, the id -> live row map and the live-row mask.

    ``alive`` and ``row_of`` are private to one state; the :class:`~.storage.Rows` buffers are
    shared with earlier states, but only past their ends. The ``*_fields`` methods return the
    fields of the next state, for ``dataclasses.replace`` or a subclass's constructor.
    """

    ids: Rows
    texts: Rows
    metadatas: Rows
    row_of: dict[str, int]
    alive: np.ndarray

    @staticmethod
    def empty_fields() -> dict[str, Any]:
        """The fields of no documents."""
        return {"ids": Rows((), object), "texts": Rows((), object),
                "metadatas": Rows((), object), "row_of": {}, "alive": np.zeros(0, dtype=bool)}

    @staticmethod
    def loaded_fields(ids: Sequence[str], texts: Sequence[str],
                      metadatas: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The fields of these documents, all live, in this order (a loaded index)."""
        return {"ids": Rows.of(object_rows(ids)), "texts": Rows.of(object_rows(texts)),
                "metadatas": Rows.of(object_rows(metadatas)),
                "row_of": {doc_id: i for i, doc_id in enumerate(ids)},
                "alive": np.ones(len(ids), dtype=bool)}

    def appended_fields(self, batch: DocBatch) -> dict[str, Any]:
        """The batch appended as new rows; rows of ids it replaces are marked dead."""
        first = len(self.ids)
        row_of = self.row_of.copy()
        replaced = [row_of[i] for i in batch.ids if i in row_of]
        row_of.update((doc_id, first + i) for i, doc_id in enumerate(batch.ids))
        alive = np.concatenate([self.alive, np.ones(len(batch.ids), dtype=bool)])
        alive[replaced] = False
        return {"ids": self.ids.appended(object_rows(batch.ids)),
                "texts": self.texts.appended(object_rows(batch.texts)),
                "metadatas": self.metadatas.appended(object_rows(batch.metadatas)),
                "row_of": row_of, "alive": alive}

    def deleted_fields(self, ids: Sequence[str]) -> dict[str, Any] | None:
        """The live-row fields without these ids (unknown ones ignored); None if none is here."""
        row_of = self.row_of.copy()
        rows = [row_of.pop(i) for i in ids if i in row_of]
        if not rows:
            return None
        alive = self.alive.copy()
        alive[rows] = False
        return {"row_of": row_of, "alive": alive}

    @property
    def needs_compaction(self) -> bool:
        """Whether dead rows outnumber live ones (and are at least :data:`COMPACT_MIN_DEAD`)."""
        dead = len(self.ids) - len(self.row_of)
        return dead >= max(COMPACT_MIN_DEAD, len(self.row_of) + 1)

    def compacted_fields(self, keep: np.ndarray) -> dict[str, Any]:
        """Only rows ``keep`` (the live ones, in order), renumbered from 0."""
        return {"ids": self.ids.taken(keep), "texts": self.texts.taken(keep),
                "metadatas": self.metadatas.taken(keep),
                "row_of": {doc_id: i for i, doc_id in enumerate(self.ids.view[keep].tolist())},
                "alive": np.ones(len(keep), dtype=bool)}

    def live_rows(self) -> np.ndarray:
        """The rows of live documents, in row order."""
        return np.flatnonzero(self.alive)

    def record(self, row: int) -> Record:
        """The document in ``row`` (its metadata a deep copy)."""
        return Record(self.ids.view[row], self.texts.view[row],
                      copy.deepcopy(self.metadatas.view[row]))

    def exported(self, batch_size: int, vectors: Callable[[np.ndarray], dict[str, Any]]
                 ) -> Iterator[EmbeddingBatch]:
        """The live documents, ``batch_size`` at a time in row order, with the stored vectors
        ``vectors(rows)`` gives as :class:`~.contract.EmbeddingBatch` fields (``dense=...``).

        Only this state is read: the batches are one version of the index, whatever is
        published meanwhile.
        """
        rows = self.live_rows()
        for lo in range(0, len(rows), batch_size):
            part = rows[lo: lo + batch_size]
            yield EmbeddingBatch(self.ids.view[part].tolist(), self.texts.view[part].tolist(),
                                 copy.deepcopy(self.metadatas.view[part].tolist()),
                                 **vectors(part))
