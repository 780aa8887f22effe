"""HybridIndex: the embedded BGE-M3 index (dense + sparse + ColBERT), in process, no server.

* Dense: exact inner-product search over a float32 matrix held in RAM.
* Sparse: an inverted index (CSR transpose, see :class:`~.storage.SparseRows`); a document
  matches lexically when it shares a token with the query, so ``mode="sparse"`` returns only
  documents with a positive lexical score.
* ColBERT: the union of the top ``max(candidates, k)`` dense and sparse candidates is
  re-scored with late interaction; token vectors live in a memory-mapped file, so only the
  candidates' vectors are paged in.
* Scores: every score is computed by :mod:`bge_integrations.core.scores`, so a ``hybrid`` hit's
  weighted score equals ``m3.compute_score([(query, text)], weights)["colbert+sparse+dense"]``.

ColBERT precision (``colbert_dtype``): ``"float32"`` (the default) guarantees that equality
within 1e-5. ``"float16"`` halves the file and the page cache it needs; each stored component
is rounded (relative error <= 2**-11). Measured on 1024-d vectors (benchmarks/results/index.md)
the ColBERT score moves by 1e-6 to 5e-6 on average and by up to 2e-5 for 2-token queries,
so the weighted score (0.4 x that) usually, but not provably, stays within 1e-5; on small
models (the 32-d test model) errors reach 1e-3. Hence float32 by default, float16 opt-in.

``store_colbert=False`` stores no token vectors: ``mode="colbert"`` raises a ``ValueError``, and
``mode="hybrid"`` fuses dense and sparse only, i.e. FlagEmbedding's ``sparse+dense`` score
``(w_d*dense + w_s*sparse) / (w_d + w_s)`` (the ColBERT weight is ignored).

Concurrency: searches run in parallel under a shared lock; ``add``/``delete`` encode and
validate first, then change every store under the exclusive lock, so a search sees an add
or delete completely or not at all, and a rejected call leaves the index unchanged.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.rerank import BGEReranker
from ..core.scores import DEFAULT_WEIGHTS, colbert_scores, sparse_to_csr
from .contract import DocBatch, Hit, Record, SearchRequest, single_query, validate_ids
from .filters import FilterNode, filter_mask
from .fusion import DEFAULT_RRF_K, Fusion, RetrievalMode, fuse, top_k
from .locks import RWLock
from .persistence import (
    DOCS_FILE,
    IndexFileError,
    check_model,
    expect_files,
    load_array,
    model_fingerprint,
    open_directory,
    verify_manifest,
    read_docs,
    reading,
    save_directory,
    write_docs,
)
from .rerank_step import search_reranked
from .storage import COLBERT_DTYPES, ColbertStore, GrowArray, SparseRows

__all__ = ["HybridIndex"]

#: texts encoded per model call in ``add`` (bounds the ColBERT vectors held in RAM)
_ENCODE_CHUNK = 256
#: queries scored together in ``search_many``
_QUERY_BLOCK = 64
#: deleted rows are purged once there are at least this many and more than live rows
_COMPACT_MIN_DEAD = 1024
#: filter masks remembered between searches (a retriever usually repeats its filter)
_MASK_CACHE = 32


def _positive_int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        msg = f"{name} must be a positive int, got {value!r}."
        raise ValueError(msg)
    return value


class HybridIndex:
    """An in-process BGE-M3 index: dense, sparse and ColBERT search with metadata filters.

    Args:
        m3: the :class:`~bge_integrations.BGEM3Embedder` that encodes documents and queries.
        store_colbert: keep ColBERT token vectors (needed by ``colbert`` mode and by ``hybrid``
            with a ColBERT weight).
        colbert_dtype: ``"float32"`` (exact scores) or ``"float16"`` (half the disk).
        candidates: dense and sparse candidates per query re-scored in ``colbert``/``hybrid``
            mode (at least ``k``). Rankings equal exhaustive scoring when the true top hits are
            among them; raise it for recall, lower it for speed.
        rrf_k: the constant of reciprocal rank fusion (``fusion="rrf"``).
        colbert_dir: directory for the ColBERT vector file (default: the system temp dir).

    Example:
        >>> from bge_integrations import BGEM3Embedder, HybridIndex
        >>> index = HybridIndex(BGEM3Embedder("BAAI/bge-m3"))  # doctest: +SKIP
        >>> index.add(["BGE-M3 is multilingual.", "Paris is in France."],
        ...           ids=["m3", "paris"])  # doctest: +SKIP
        ['m3', 'paris']
        >>> index.search("which model is multilingual?", k=1)[0].id  # doctest: +SKIP
        'm3'
    """

    def __init__(self, m3: Any, *, store_colbert: bool = True, colbert_dtype: str = "float32",
                 candidates: int = 100, rrf_k: int = DEFAULT_RRF_K,
                 colbert_dir: str | os.PathLike | None = None) -> None:
        if colbert_dtype not in COLBERT_DTYPES:
            msg = f"colbert_dtype must be one of {COLBERT_DTYPES}, got {colbert_dtype!r}."
            raise ValueError(msg)
        self._m3 = m3
        self.store_colbert = bool(store_colbert)
        self.colbert_dtype = colbert_dtype
        self.candidates = _positive_int(candidates, "candidates")
        self.rrf_k = _positive_int(rrf_k, "rrf_k")
        self._dim = int(m3.dim)
        self._vocab_size = int(m3.vocab_size)
        self._lock = RWLock()
        self._writer = threading.Lock()  # one add/delete at a time, searches go on meanwhile
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._metadatas: list[dict[str, Any]] = []
        self._row_of: dict[str, int] = {}
        self._alive = GrowArray((), bool)
        self._dense = GrowArray((self._dim,), np.float32)
        self._sparse = SparseRows(self._vocab_size)
        self._colbert = (ColbertStore(self._dim, colbert_dtype, colbert_dir)
                         if self.store_colbert else None)
        self._masks: dict[str, np.ndarray] = {}  # repr(filter) -> rows it matches

    @property
    def m3(self) -> Any:
        """The embedder that encodes documents and queries."""
        return self._m3

    def __len__(self) -> int:
        return len(self._row_of)

    # -- writing -----------------------------------------------------------------------------
    def add(self, texts: Sequence[str], metadatas: Sequence[Mapping[str, Any] | None] | None = None,
            ids: Sequence[str] | None = None) -> list[str]:
        """Add documents, replacing those whose id already exists (upsert).

        Args:
            texts: the document texts.
            metadatas: one JSON-serialisable dict (or None) per text.
            ids: one distinct id per text; default fresh ``uuid4().hex`` ids.

        Returns:
            The ids, in input order.

        Example:
            >>> index.add(["a text"], metadatas=[{"year": 2024}], ids=["doc-1"])  # doctest: +SKIP
            ['doc-1']
        """
        batch = DocBatch.build(texts, metadatas, ids,
                               max_texts=self._m3.max_texts_per_call)
        if not batch.texts:
            return []
        with self._writer:
            dense, sparse, colbert = [], [], []
            for lo in range(0, len(batch.texts), _ENCODE_CHUNK):
                chunk = batch.texts[lo: lo + _ENCODE_CHUNK]
                out = self._m3.encode_documents(chunk, dense=True, sparse=True,
                                                colbert=self.store_colbert)
                if out.dense.shape != (len(chunk), self._dim):
                    msg = (f"the embedder returned dense vectors of shape {out.dense.shape}, "
                           f"expected {(len(chunk), self._dim)}.")
                    raise ValueError(msg)
                dense.append(out.dense)
                sparse.append(sparse_to_csr(out.sparse, self._vocab_size))
                if self._colbert is not None:
                    colbert.append(self._colbert.stage(out.colbert))
            with self._lock.write():
                self._append(batch, np.concatenate(dense), sp.vstack(sparse, format="csr"),
                             np.concatenate(colbert) if colbert else None)
        return batch.ids

    def _append(self, batch: DocBatch, dense: np.ndarray, sparse: sp.csr_matrix,
                colbert: np.ndarray | None) -> None:
        self._masks.clear()
        replaced = [self._row_of[i] for i in batch.ids if i in self._row_of]
        self._alive.view[replaced] = False
        first = len(self._ids)
        self._ids.extend(batch.ids)
        self._texts.extend(batch.texts)
        self._metadatas.extend(batch.metadatas)
        self._row_of.update((doc_id, first + i) for i, doc_id in enumerate(batch.ids))
        self._alive.extend(np.ones(len(batch.ids), dtype=bool))
        self._dense.extend(dense)
        self._sparse.extend(sparse)
        if self._colbert is not None:
            self._colbert.extend(colbert)
        self._maybe_compact()

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; unknown ids are ignored. Returns how many were removed.

        Example:
            >>> index.delete(["doc-1"])  # doctest: +SKIP
            1
        """
        id_list = validate_ids(ids)
        with self._writer, self._lock.write():
            rows = [self._row_of.pop(i) for i in id_list if i in self._row_of]
            self._alive.view[rows] = False
            self._maybe_compact()
        return len(rows)

    def _maybe_compact(self) -> None:
        dead = len(self._ids) - len(self._row_of)
        if dead < max(_COMPACT_MIN_DEAD, len(self._row_of) + 1):
            return
        keep = np.flatnonzero(self._alive.view)
        self._masks.clear()
        self._ids = [self._ids[r] for r in keep.tolist()]
        self._texts = [self._texts[r] for r in keep.tolist()]
        self._metadatas = [self._metadatas[r] for r in keep.tolist()]
        self._row_of = {doc_id: i for i, doc_id in enumerate(self._ids)}
        self._alive.replace(np.ones(len(keep), dtype=bool))
        self._dense.replace(self._dense.view[keep])
        self._sparse.replace(self._sparse.matrix(keep))
        if self._colbert is not None:
            self._colbert.keep(keep)

    # -- reading -----------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[Record]:
        """The stored documents with these ids, in the order asked; unknown ids are skipped.

        Example:
            >>> index.get(["doc-1"])[0].metadata  # doctest: +SKIP
            {'year': 2024}
        """
        id_list = validate_ids(ids)
        with self._lock.read():
            rows = [self._row_of[i] for i in id_list if i in self._row_of]
            return [Record(self._ids[r], self._texts[r], copy.deepcopy(self._metadatas[r]))
                    for r in rows]

    def search(self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None,
               mode: str | RetrievalMode = RetrievalMode.HYBRID,
               weights: Sequence[float] = DEFAULT_WEIGHTS,
               fusion: str | Fusion = Fusion.WEIGHTED, rerank: BGEReranker | None = None,
               candidates: int = 50) -> list[Hit]:
        """The ``k`` best documents for one query.

        Args:
            query: the query text.
            k: how many hits at most (exactly ``k`` when ``k`` documents match the filter;
                ``sparse`` mode also needs a shared token).
            filter: a metadata filter (see :mod:`bge_integrations.retrieval.filters`).
            mode: ``"hybrid"``, ``"dense"``, ``"sparse"`` or ``"colbert"``.
            weights: (dense, sparse, colbert) weights of ``hybrid`` mode.
            fusion: ``"weighted"`` (score fusion) or ``"rrf"`` (reciprocal rank fusion).
            rerank: a ``BGEReranker`` that reorders the best ``candidates`` documents
                (:mod:`.rerank_step`); their ``scores["rerank"]`` is its score.
            candidates: how many documents the reranker sees.

        Returns:
            Hits, best first.

        Example:
            >>> hits = index.search("France", k=2, filter={"lang": "en"})  # doctest: +SKIP
            >>> sorted(hits[0].scores)  # doctest: +SKIP
            ['colbert', 'dense', 'sparse']
        """
        return search_reranked(query, k, rerank, candidates, lambda n: self.search_many(
            single_query(query), k=n, filter=filter, mode=mode, weights=weights,
            fusion=fusion)[0])

    def search_many(self, queries: Sequence[str], k: int = 10,
                    filter: Mapping[str, Any] | None = None,
                    mode: str | RetrievalMode = RetrievalMode.HYBRID,
                    weights: Sequence[float] = DEFAULT_WEIGHTS,
                    fusion: str | Fusion = Fusion.WEIGHTED) -> list[list[Hit]]:
        """:meth:`search` for many queries: one model call, scores computed in blocks.

        Example:
            >>> [len(h) for h in index.search_many(["panda", "France"], k=1)]  # doctest: +SKIP
            [1, 1]
        """
        req = SearchRequest.build(queries, k=k, filter=filter, mode=mode, weights=weights,
                                  fusion=fusion, has_colbert=self.store_colbert)
        if not req.queries:
            return []
        encoded = self._m3.encode_queries(req.queries, dense=req.needs_dense,
                                          sparse=req.needs_sparse, colbert=req.needs_colbert)
        with self._lock.read():
            allowed = np.flatnonzero(self._matching(req.filter))
            if not allowed.size:
                return [[] for _ in req.queries]
            results: list[list[Hit]] = []
            for lo in range(0, len(req.queries), _QUERY_BLOCK):
                hi = min(lo + _QUERY_BLOCK, len(req.queries))
                dense = sparse = None
                if req.needs_dense:
                    dense = (encoded.dense[lo:hi] @ self._dense.view.T)[:, allowed]
                if req.needs_sparse:
                    q_sparse = sparse_to_csr(encoded.sparse[lo:hi], self._vocab_size)
                    sparse = self._sparse.scores(q_sparse)[:, allowed]
                for j in range(hi - lo):
                    q_colbert = encoded.colbert[lo + j] if req.needs_colbert else None
                    results.append(self._rank(req, allowed,
                                              None if dense is None else dense[j],
                                              None if sparse is None else sparse[j], q_colbert))
        return results

    def _matching(self, node: FilterNode | None) -> np.ndarray:
        """Live rows that match the filter (masks are cached until the rows change)."""
        if node is None:
            return self._alive.view
        key = repr(node)  # type-aware, unlike ==: {"x": 1} and {"x": True} differ
        mask = self._masks.get(key)
        if mask is None:
            mask = filter_mask(node, self._metadatas)
            if len(self._masks) >= _MASK_CACHE:
                self._masks.clear()
            self._masks[key] = mask
        return self._alive.view & mask

    def _rank(self, req: SearchRequest, allowed: np.ndarray, dense: np.ndarray | None,
              sparse: np.ndarray | None, q_colbert: np.ndarray | None) -> list[Hit]:
        if req.mode is RetrievalMode.DENSE:
            cand = top_k(dense, req.k)
        elif req.mode is RetrievalMode.SPARSE:
            matched = np.flatnonzero(sparse > 0)
            cand = matched[top_k(sparse[matched], req.k)]
        else:
            limit = max(self.candidates, req.k)
            matched = np.flatnonzero(sparse > 0)
            cand = np.union1d(top_k(dense, limit), matched[top_k(sparse[matched], limit)])
            cand = cand[np.argsort(-dense[cand], kind="stable")]  # fused-score ties: dense wins
        parts = {}
        for name in req.parts:
            if name == "colbert":
                docs = self._colbert.gather(allowed[cand])
                parts[name] = colbert_scores([q_colbert], docs)[0] if docs else np.zeros(0)
            else:
                parts[name] = (dense if name == "dense" else sparse)[cand]
        fused = fuse(req.mode, req.fusion, parts, req.weights, self.rrf_k)
        hits = []
        for pos in top_k(fused, req.k).tolist():
            row = int(allowed[cand[pos]])
            hits.append(Hit(self._ids[row], self._texts[row],
                            copy.deepcopy(self._metadatas[row]), float(fused[pos]),
                            {name: float(parts[name][pos]) for name in parts}))
        return hits

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """Save to ``directory`` atomically (JSON + .npy, no pickle).

        Only live documents are written. A crash mid-save leaves the previous save readable.

        Example:
            >>> index.save("my-index")  # doctest: +SKIP
            >>> HybridIndex.load("my-index", m3)  # doctest: +SKIP
        """
        fingerprint = model_fingerprint(self._m3, self.store_colbert)
        with self._lock.read():
            save_directory(directory, lambda folder: self._write(folder, fingerprint))

    def _write(self, folder: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
        rows = np.flatnonzero(self._alive.view)
        write_docs(folder, [self._ids[r] for r in rows.tolist()],
                   [self._texts[r] for r in rows.tolist()],
                   [self._metadatas[r] for r in rows.tolist()])
        np.save(folder / "dense.npy", self._dense.view[rows])
        matrix = self._sparse.matrix(rows)
        np.save(folder / "sparse_indptr.npy", matrix.indptr.astype(np.int64))
        np.save(folder / "sparse_indices.npy", matrix.indices.astype(np.int32))
        np.save(folder / "sparse_values.npy", matrix.data.astype(np.float32))
        if self._colbert is not None:
            offsets = self._colbert.write(folder / "colbert.npy", rows)
            np.save(folder / "colbert_offsets.npy", offsets)
        config = {"store_colbert": self.store_colbert, "colbert_dtype": self.colbert_dtype,
                  "candidates": self.candidates, "rrf_k": self.rrf_k}
        return {"model": fingerprint, "config": config, "count": len(rows)}

    @classmethod
    def load(cls, directory: str | os.PathLike, m3: Any, *, verify: bool = True,
             colbert_dir: str | os.PathLike | None = None) -> HybridIndex:
        """Open an index saved with :meth:`save`.

        Args:
            directory: the saved index.
            m3: the embedder; it must be the model that built the index.
            verify: check every file's sha256 (sizes and structure are always checked).
            colbert_dir: directory for ColBERT vectors of documents added after loading.

        Raises:
            IndexFileError: the directory holds no index, or a file is missing, truncated or
                corrupted.
            ModelMismatchError: ``m3`` is not the model that built the index.

        Example:
            >>> index = HybridIndex.load("my-index", BGEM3Embedder("BAAI/bge-m3"))  # doctest: +SKIP
        """
        manifest, folder = open_directory(directory, verify=verify)
        try:
            config, count = manifest["config"], manifest["count"]
            index = cls(m3, store_colbert=config["store_colbert"],
                        colbert_dtype=config["colbert_dtype"], candidates=config["candidates"],
                        rrf_k=config["rrf_k"], colbert_dir=colbert_dir)
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"the manifest of {str(directory)!r} is corrupted ({exc!r})."
            raise IndexFileError(msg) from None
        check_model(manifest.get("model", {}), m3)
        expected = {DOCS_FILE, "dense.npy", "sparse_indptr.npy", "sparse_indices.npy",
                    "sparse_values.npy"}
        if index.store_colbert:
            expected |= {"colbert.npy", "colbert_offsets.npy"}
        expect_files(manifest, expected, directory)
        with reading(directory):
            index._read(folder, count)
        verify_manifest(manifest, directory)
        return index

    def _read(self, folder: Path, count: int) -> None:
        batch = read_docs(folder, count)
        dense = load_array(folder / "dense.npy", dtype="float32", ndim=2)
        indptr = load_array(folder / "sparse_indptr.npy", dtype="int64", ndim=1)
        indices = load_array(folder / "sparse_indices.npy", dtype="int32", ndim=1)
        values = load_array(folder / "sparse_values.npy", dtype="float32", ndim=1)
        if dense.shape != (count, self._dim):
            msg = f"dense.npy has shape {dense.shape}, expected {(count, self._dim)}."
            raise ValueError(msg)
        if (len(indptr) != count + 1 or indptr[0] != 0 or indptr[-1] != len(indices)
                or len(values) != len(indices) or np.any(np.diff(indptr) < 0)
                or (len(indices) and (indices.min() < 0 or indices.max() >= self._vocab_size))):
            msg = "the sparse arrays do not form a valid (documents, vocabulary) matrix."
            raise ValueError(msg)
        if self._colbert is not None:
            offsets = load_array(folder / "colbert_offsets.npy", dtype="int64", ndim=1)
            if len(offsets) != count + 1:
                msg = f"colbert_offsets.npy has {len(offsets)} entries, expected {count + 1}."
                raise ValueError(msg)
            self._colbert.attach(folder / "colbert.npy", offsets)
        self._ids, self._texts, self._metadatas = batch.ids, batch.texts, batch.metadatas
        self._row_of = {doc_id: i for i, doc_id in enumerate(batch.ids)}
        self._masks.clear()
        self._alive.replace(np.ones(count, dtype=bool))
        self._dense.replace(dense)
        self._sparse.replace(sp.csr_matrix((values, indices, indptr),
                                           shape=(count, self._vocab_size)))
