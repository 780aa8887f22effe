"""DenseIndex: exact dense-vector search for any non-M3 model, in process, no server.

For BGE-M3 use :class:`~.index.HybridIndex`, which adds sparse and ColBERT scores; this index is
the dense-only counterpart with the same ``add / delete / search / search_many / save / load``
shape, the same :class:`~.contract.Hit` results, the same input validation
(:mod:`.contract`) and the same metadata filter language (:mod:`.filters`).

* Search: exact inner product of the query vector with every (filtered) document vector held
  in RAM; with the default normalized embeddings that is the cosine similarity.
* Persistence: the directory layout of :mod:`.persistence` (kind ``dense``): atomic saves,
  sha256-checked files, JSON + ``.npy`` (no pickle), and a model check on load.
* Concurrency: searches run in parallel under a shared lock; ``add`` encodes first, then
  changes the stores under the exclusive lock, so a search sees an add or delete completely
  or not at all, and a rejected call leaves the index unchanged.

Example:
    >>> from bge_integrations import BGEEmbedder, DenseIndex
    >>> index = DenseIndex(BGEEmbedder("BAAI/bge-small-en-v1.5"))  # doctest: +SKIP
    >>> index.add(["Paris is in France."], metadatas=[{"lang": "en"}])  # doctest: +SKIP
    >>> index.search("capital of France", k=1, filter={"lang": "en"})[0].score  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.embedder import BGEEmbedder
from ..core.rerank import BGEReranker
from .contract import DocBatch, Hit, SearchRequest, single_query, validate_ids
from .filters import filter_mask
from .fusion import RetrievalMode, top_k
from .locks import RWLock
from .persistence import (
    DOCS_FILE,
    check_dense_model,
    dense_fingerprint,
    expect_files,
    load_array,
    open_directory,
    verify_manifest,
    read_docs,
    reading,
    save_directory,
    write_docs,
)
from .rerank_step import search_reranked

__all__ = ["DenseIndex", "VECTORS_FILE"]

#: texts encoded per model call in ``add``
_ENCODE_CHUNK = 1024
#: queries scored together in ``search_many``
_QUERY_BLOCK = 64

#: the document vectors of a saved dense index, next to ``docs.json``
VECTORS_FILE = "dense.npy"


class DenseIndex:
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

    def __init__(self, embedder: BGEEmbedder) -> None:
        if not isinstance(embedder, BGEEmbedder):
            msg = (f"DenseIndex needs a BGEEmbedder, got {type(embedder).__name__}; for "
                   "BGEM3Embedder use HybridIndex.")
            raise TypeError(msg)
        self._embedder = embedder
        self._dim = int(embedder.dim)
        self._lock = RWLock()
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._metadatas: list[dict[str, Any]] = []
        self._vectors = np.zeros((0, self._dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def embedder(self) -> BGEEmbedder:
        """The embedder that encodes documents and queries."""
        return self._embedder

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
                Nothing changes then.
        """
        batch = DocBatch.build(texts, metadatas, ids,
                               max_texts=self._embedder.max_texts_per_call)
        if not batch.texts:
            return []
        vectors = np.concatenate([
            self._embedder.encode_documents(batch.texts[lo:lo + _ENCODE_CHUNK])
            for lo in range(0, len(batch.texts), _ENCODE_CHUNK)])
        if vectors.shape != (len(batch.texts), self._dim):
            msg = (f"the embedder returned vectors of shape {vectors.shape}, expected "
                   f"{(len(batch.texts), self._dim)}.")
            raise ValueError(msg)
        with self._lock.write():
            keep = self._rows_without(batch.ids)
            self._ids = [self._ids[r] for r in keep] + batch.ids
            self._texts = [self._texts[r] for r in keep] + batch.texts
            self._metadatas = [self._metadatas[r] for r in keep] + batch.metadatas
            self._vectors = np.concatenate([self._vectors[keep],
                                            vectors.astype(np.float32, copy=False)])
        return list(batch.ids)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; unknown ids are ignored. Returns how many were removed."""
        id_list = validate_ids(ids)
        with self._lock.write():
            keep = self._rows_without(id_list)
            removed = len(self._ids) - len(keep)
            if removed:
                self._ids = [self._ids[r] for r in keep]
                self._texts = [self._texts[r] for r in keep]
                self._metadatas = [self._metadatas[r] for r in keep]
                self._vectors = self._vectors[keep]
        return removed

    def _rows_without(self, ids: Sequence[str]) -> list[int]:
        drop = set(ids)
        return [r for r, doc_id in enumerate(self._ids) if doc_id not in drop]

    # -- reading -----------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None,
               rerank: BGEReranker | None = None, candidates: int = 50) -> list[Hit]:
        """The ``k`` documents whose vectors have the largest inner product with the query's.

        Args:
            query: the search text (the model's query instruction is applied).
            k: how many hits at most.
            filter: metadata filter, as for ``HybridIndex.search`` (e.g. ``{"lang": "en"}``,
                ``{"year": {"$gte": 2020}}``); it is applied before the top k are taken.
            rerank: a ``BGEReranker`` that reorders the best ``candidates`` documents.
            candidates: how many documents the reranker sees.

        Returns:
            Hits, best first; ``hit.scores`` is ``{"dense": ...}`` (and ``"rerank"``).
        """
        return search_reranked(query, k, rerank, candidates, lambda n: self.search_many(
            single_query(query), k=n, filter=filter)[0])

    def search_many(self, queries: Sequence[str], k: int = 10,
                    filter: Mapping[str, Any] | None = None) -> list[list[Hit]]:
        """:meth:`search` for many queries: one model call for all of them.

        Example:
            >>> [len(h) for h in index.search_many(["panda", "France"], k=1)]  # doctest: +SKIP
            [1, 1]
        """
        req = SearchRequest.build(queries, k=k, filter=filter, mode=RetrievalMode.DENSE,
                                  has_colbert=False)
        if not req.queries:
            return []
        encoded = self._embedder.encode_queries(req.queries)
        with self._lock.read():
            allowed = np.flatnonzero(filter_mask(req.filter, self._metadatas))
            if not allowed.size:
                return [[] for _ in req.queries]
            vectors = self._vectors if req.filter is None else self._vectors[allowed]
            results: list[list[Hit]] = []
            for lo in range(0, len(encoded), _QUERY_BLOCK):
                for scores in encoded[lo:lo + _QUERY_BLOCK] @ vectors.T:
                    results.append([self._hit(int(allowed[j]), float(scores[j]))
                                    for j in top_k(scores, req.k).tolist()])
        return results

    def _hit(self, row: int, score: float) -> Hit:
        return Hit(self._ids[row], self._texts[row], copy.deepcopy(self._metadatas[row]), score,
                   {"dense": score})

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Save to ``directory`` atomically (JSON + .npy, no pickle, sha256 per file).

        A crash mid-save leaves the previous save readable. The directory must be new, empty,
        or hold a saved index.

        Example:
            >>> index.save("my-dense-index")  # doctest: +SKIP
            >>> DenseIndex.load("my-dense-index")  # doctest: +SKIP
        """
        fingerprint = dense_fingerprint(self._embedder)
        with self._lock.read():
            save_directory(directory, lambda folder: self._write(folder, fingerprint),
                           kind="dense")

    def _write(self, folder: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
        write_docs(folder, self._ids, self._texts, self._metadatas)
        np.save(folder / VECTORS_FILE, self._vectors)
        return {"model": fingerprint, "count": len(self._ids)}

    @classmethod
    def load(cls, directory: str | os.PathLike[str], embedder: BGEEmbedder | None = None, *,
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
                ``FileNotFoundError``), or a file is missing, truncated or corrupted.
            ModelMismatchError: the embedder's dimension or embeddings differ from those of
                the model that built the index.

        Example:
            >>> index = DenseIndex.load("my-dense-index", device="cpu")  # doctest: +SKIP
        """
        manifest, folder = open_directory(directory, kind="dense", verify=verify)
        with reading(directory):
            saved, count = dict(manifest["model"]), int(manifest["count"])
            options = {"pooling": saved["pooling"],
                       "query_instruction": saved["query_instruction"] or "",
                       "query_instruction_format": saved["query_instruction_format"]}
            source = model or saved["source"]
        if embedder is None:
            embedder = BGEEmbedder(source, **{**options, **embedder_options})
        index = cls(embedder)
        check_dense_model(saved, embedder)
        expect_files(manifest, {DOCS_FILE, VECTORS_FILE}, directory)
        with reading(directory):
            index._read(folder, count)
        verify_manifest(manifest, directory)
        return index

    def _read(self, folder: Path, count: int) -> None:
        batch = read_docs(folder, count)
        vectors = load_array(folder / VECTORS_FILE, dtype="float32", ndim=2)
        if vectors.shape != (count, self._dim):
            msg = f"{VECTORS_FILE} has shape {vectors.shape}, expected {(count, self._dim)}."
            raise ValueError(msg)
        self._ids, self._texts, self._metadatas = batch.ids, batch.texts, batch.metadatas
        self._vectors = vectors
