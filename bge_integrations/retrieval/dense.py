"""DenseIndex: exact dense-vector search for any non-M3 model, in process, no server.

For BGE-M3 use :class:`~.index.HybridIndex`, which adds sparse and ColBERT scores; this index is
the dense-only counterpart with the same ``add / delete / search / search_many / save / load``
shape, the same :class:`~.contract.Hit` results, the same input validation
(:mod:`.contract`) and the same metadata filter language (:mod:`.filters`).

* Search: exact inner product of the query vector with every (filtered) document vector held
  in RAM; with the default normalized embeddings that is the cosine similarity.
* Persistence: the directory layout of :mod:`.persistence` (kind ``dense``): atomic saves,
  sha256-checked files, JSON + ``.npy`` (no pickle), and a model check on load.
* Concurrency: the documents, vectors and metadata form one immutable state; ``add`` and
  ``delete`` build the next state aside and publish it with one assignment, so a search (or
  a save) reads one whole state without waiting, and an error or an interrupt anywhere in a
  call leaves the index as it was.
* Growth: rows are appended into buffers shared between states (:mod:`.doc_rows`), so an
  ``add`` costs O(batch) amortised however large the index is; replaced and deleted rows are
  purged once they outnumber the live ones.

Example:
    >>> from bge_integrations import BGEEmbedder, DenseIndex
    >>> index = DenseIndex(BGEEmbedder("BAAI/bge-small-en-v1.5"))  # doctest: +SKIP
    >>> index.add(["Paris is in France."], metadatas=[{"lang": "en"}])  # doctest: +SKIP
    >>> index.search("capital of France", k=1, filter={"lang": "en"})[0].score  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.embedder import BGEEmbedder
from .contract import (
    DenseEncoder,
    DocBatch,
    EmbeddingBatch,
    Hit,
    Record,
    check_batch_size,
    validate_ids,
)
from .dense_base import DenseBase
from .doc_rows import DocRows
from .filters import filter_mask
from .fusion import RetrievalMode, top_k
from .identity import check_dense_model, dense_fingerprint, dense_options, saved_source
from .persistence import (
    FILES,
    expect_files,
    load_array,
    manifest_field,
    open_directory,
    read_docs,
    reading,
    save_directory,
    verify_manifest,
    write_array,
    write_docs,
)
from .storage import Rows
from .vectors import check_dense

__all__ = ["DenseIndex", "VECTORS_FILE"]

#: texts encoded per model call in ``add``
_ENCODE_CHUNK = 1024
#: queries scored together in ``search_many``
_QUERY_BLOCK = 64
#: the most documents a saved index may claim
MAX_DOCUMENTS = 1 << 40

#: the document vectors of a saved dense index, next to ``docs.json``
VECTORS_FILE = FILES["dense"]


@dataclass(frozen=True)
class _State(DocRows):
    """Documents and their vectors, aligned by row; never edited once published."""

    vectors: Rows

    @classmethod
    def empty(cls, dim: int) -> _State:
        return cls(**DocRows.empty_fields(), vectors=Rows((dim,), np.float32))

    def settled(self) -> _State:
        """This state, or (once dead rows outnumber live ones) its live rows only."""
        if not self.needs_compaction:
            return self
        keep = self.live_rows()
        return _State(**self.compacted_fields(keep), vectors=self.vectors.taken(keep))


class DenseIndex(DenseBase):
    """Documents, their embeddings and metadata in memory; exact inner-product search.

    Args:
        embedder: the :class:`~bge_integrations.BGEEmbedder` that encodes documents
            (``encode_documents``) and queries (``encode_queries``).

    Example:
        >>> from bge_integrations import BGEEmbedder, DenseIndex
        >>> index = DenseIndex(BGEEmbedder("BAAI/bge-small-en-v1.5"))  # doctest: +SKIP
        >>> index.add(["Pandas eat bamboo.", "Paris is in France."],
        ...           ids=["panda", "paris"])  # doctest: +SKIP
        ['panda', 'paris']
        >>> index.search("what do pandas eat?", k=1)[0].id  # doctest: +SKIP
        'panda'
    """

    def __init__(self, embedder: DenseEncoder) -> None:
        self._use_embedder(embedder)
        self._writer = threading.Lock()
        self._state = _State.empty(self._dim)

    def __len__(self) -> int:
        return len(self._state.row_of)

    # -- writing -----------------------------------------------------------------------------
    def add(self, texts: Sequence[str], metadatas: Sequence[Mapping[str, Any] | None] | None = None,
            ids: Sequence[str] | None = None) -> list[str]:
        """Embed and store ``texts``, replacing documents whose id exists (upsert).

        Args:
            texts: the document texts.
            metadatas: one JSON-serialisable dict (or None) per text.
            ids: one distinct id per text; default fresh ``uuid4().hex`` ids.

        Returns:
            The ids, in input order.

        Raises:
            ValueError: lengths differ, an id is invalid or repeats, or metadata is not JSON.
                Nothing changes then (nor on any other error or an interrupt).
        """
        batch = DocBatch.build(texts, metadatas, ids,
                               max_texts=self._embedder.max_texts_per_call)
        if not batch.texts:
            return []
        vectors = np.concatenate([
            check_dense(self._embedder.encode_documents(batch.texts[lo:lo + _ENCODE_CHUNK]),
                        n=len(batch.texts[lo:lo + _ENCODE_CHUNK]), dim=self._dim,
                        name="the embedder's output")
            for lo in range(0, len(batch.texts), _ENCODE_CHUNK)])
        self._publish(batch, vectors)
        return list(batch.ids)

    def add_embeddings(self, texts: Sequence[str], embeddings: Any, *,
                       metadatas: Sequence[Mapping[str, Any] | None] | None = None,
                       ids: Sequence[str] | None = None) -> list[str]:
        """Store documents with vectors computed elsewhere (no model call); upsert like :meth:`add`.

        Args:
            texts: the document texts.
            embeddings: float32 ``(n, dim)``, as ``embedder.encode_documents(texts)`` returns.
            metadatas: one JSON-serialisable dict (or None) per text.
            ids: one distinct id per text; default fresh ``uuid4().hex`` ids.

        Returns:
            The ids, in input order.

        Raises:
            ValueError: another shape, NaN or inf (naming the row), or a bad text, id or
                metadata; nothing changes then.

        Example:
            >>> vectors = embedder.encode_documents(texts)  # doctest: +SKIP
            >>> index.add_embeddings(texts, vectors, ids=ids)  # doctest: +SKIP
        """
        batch = DocBatch.build(texts, metadatas, ids)
        vectors = check_dense(embeddings, n=len(batch.texts), dim=self._dim, name="embeddings")
        if batch.texts:
            self._publish(batch, vectors)
        return list(batch.ids)

    def _publish(self, batch: DocBatch, vectors: np.ndarray) -> None:
        with self._writer:
            state = self._state
            self._state = _State(**state.appended_fields(batch),
                                 vectors=state.vectors.appended(vectors)).settled()

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; unknown ids are ignored. Returns how many were removed."""
        id_list = validate_ids(ids)
        with self._writer:
            state = self._state
            fields = state.deleted_fields(id_list)
            if fields is None:
                return 0
            self._state = dataclasses.replace(state, **fields).settled()
        return len(state.row_of) - len(fields["row_of"])

    # -- reading -----------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[Record]:
        """The stored documents with these ids, in the order asked; unknown ids are skipped.

        Example:
            >>> index.get(["panda"])[0].text  # doctest: +SKIP
            'Pandas eat bamboo.'
        """
        id_list = validate_ids(ids)
        state = self._state
        return [state.record(state.row_of[i]) for i in id_list if i in state.row_of]

    def iter_embeddings(self, batch_size: int = 256) -> Iterator[EmbeddingBatch]:
        """Every stored document with its vector, ``batch_size`` at a time; no model call.

        The batches come from the state published when this is called: adds and deletes
        that run meanwhile do not show in them. :func:`~.transfer.copy_index` moves them into
        another index.

        Example:
            >>> next(index.iter_embeddings(batch_size=2)).dense.shape  # doctest: +SKIP
            (2, 384)
        """
        size = check_batch_size(batch_size)
        state = self._state
        return state.exported(size, lambda rows: {"dense": state.vectors.view[rows]})

    def search_many(self, queries: Sequence[str], k: int = 10,
                    filter: Mapping[str, Any] | None = None,
                    mode: str | RetrievalMode = RetrievalMode.DENSE) -> list[list[Hit]]:
        """:meth:`search` for many queries: one model call for all of them.

        Example:
            >>> [len(h) for h in index.search_many(["panda", "France"], k=1)]  # doctest: +SKIP
            [1, 1]
        """
        req = self._request(queries, k, filter, mode)
        if not req.queries:
            return []
        encoded = self._embedder.encode_queries(req.queries)
        state = self._state
        mask = state.alive
        if req.filter is not None:
            mask = mask & filter_mask(req.filter, state.metadatas.view)
        allowed = np.flatnonzero(mask)
        if not allowed.size:
            return [[] for _ in req.queries]
        every_row = len(allowed) == len(state.ids)
        results: list[list[Hit]] = []
        for lo in range(0, len(encoded), _QUERY_BLOCK):
            block = encoded[lo:lo + _QUERY_BLOCK] @ state.vectors.view.T
            for scores in (block if every_row else block[:, allowed]):
                results.append([self._hit(state, int(allowed[j]), float(scores[j]))
                                for j in top_k(scores, req.k).tolist()])
        return results

    @staticmethod
    def _hit(state: _State, row: int, score: float) -> Hit:
        record = state.record(row)
        return Hit(record.id, record.text, record.metadata, score, {"dense": score})

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Save to ``directory`` atomically (JSON + .npy, no pickle, sha256 per file).

        A crash mid-save leaves the previous save readable; a full disk raises ``OSError`` and
        changes nothing. The directory must be new, empty, or hold a saved index.

        Example:
            >>> index.save("my-dense-index")  # doctest: +SKIP
            >>> DenseIndex.load("my-dense-index")  # doctest: +SKIP
        """
        fingerprint = dense_fingerprint(self._embedder)
        state = self._state
        save_directory(directory, lambda folder: self._write(folder, state, fingerprint),
                       kind="dense")

    @staticmethod
    def _write(folder: Path, state: _State, fingerprint: dict[str, Any]) -> dict[str, Any]:
        rows = state.live_rows()
        write_docs(folder, state.ids.view[rows].tolist(), state.texts.view[rows].tolist(),
                   state.metadatas.view[rows].tolist())
        write_array(folder / VECTORS_FILE, state.vectors.view[rows])
        return {"model": fingerprint, "count": len(rows)}

    @classmethod
    def load(cls, directory: str | os.PathLike[str], embedder: DenseEncoder | None = None, *,
             model: str | None = None, verify: bool = True, **embedder_options: Any
             ) -> DenseIndex:
        """Open an index saved with :meth:`save`.

        Args:
            directory: the saved index.
            embedder: the embedder to query with; by default the saved model (or ``model``)
                is loaded with the saved pooling and instruction plus ``embedder_options``
                (``device``, ``dtype``, ...; explicit options win over the saved ones).
            model: where to load the model from when it is not where it was (same model).
            verify: check every file's sha256 (sizes and structure are always checked).

        Raises:
            IndexFileError: the directory holds no dense index (then also a
                ``FileNotFoundError``), or a file is missing, truncated, corrupted or crafted.
            ModelMismatchError: the embedder's dimension or embeddings differ from those of
                the model that built the index.

        Example:
            >>> index = DenseIndex.load("my-dense-index", device="cpu")  # doctest: +SKIP
        """
        with open_directory(directory, kind="dense", verify=verify) as (manifest, folder):
            saved = manifest.get("model")
            options = dense_options(saved)
            count = manifest_field(manifest, "count", int, low=0, high=MAX_DOCUMENTS)
            if embedder is None:
                source = model or saved_source(saved)
                embedder = BGEEmbedder(source, **{**options, **embedder_options})
            index = cls(embedder)
            check_dense_model(saved, embedder)
            expect_files(manifest, {FILES["docs"], VECTORS_FILE}, directory)
            with reading(directory):
                index._state = index._read(folder, count)
            verify_manifest(manifest, directory)
        return index

    def _read(self, folder: Path, count: int) -> _State:
        batch = read_docs(folder, count)
        vectors = load_array(folder / VECTORS_FILE, dtype="float32", shape=(count, self._dim))
        if not np.all(np.isfinite(vectors)):
            msg = f"{VECTORS_FILE} holds NaN or inf."
            raise ValueError(msg)
        return _State(**DocRows.loaded_fields(batch.ids, batch.texts, batch.metadatas),
                      vectors=Rows.of(vectors))
