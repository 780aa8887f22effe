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

Integrity and concurrency: the stores form one immutable state (:class:`_State`). ``add``,
``add_embeddings`` and ``delete`` (one at a time) encode and validate, build the next state
aside (compactions included) and publish it with one assignment. An error or an interrupt at
any point before that leaves the index exactly as it was; a search or a save reads the state
published when it started, without waiting, and sees each change completely or not at all.
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
import scipy.sparse as sp

from ..core.scores import DEFAULT_WEIGHTS, colbert_scores, sparse_to_csr
from .contract import (
    DocBatch,
    EmbeddingBatch,
    Hit,
    M3Encoder,
    Record,
    SearchRequest,
    check_batch_size,
    require_m3,
    validate_ids,
)
from .doc_rows import DocRows
from .filters import FilterNode, filter_mask
from .fusion import DEFAULT_RRF_K, Fusion, RetrievalMode, fuse, top_k
from .identity import check_model, model_fingerprint, saved_source
from .m3_index import M3Index
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
from .storage import COLBERT_DTYPES, ColbertRows, Rows, SparseRows
from .vectors import EncodedDocs, sparse_dicts

__all__ = ["HybridIndex"]

#: texts encoded per model call in ``add`` (bounds the ColBERT vectors held in RAM)
_ENCODE_CHUNK = 256
#: queries scored together in ``search_many``
_QUERY_BLOCK = 64
#: filter masks remembered between searches (a retriever usually repeats its filter)
_MASK_CACHE = 32
#: the largest ``candidates`` and ``rrf_k`` accepted
MAX_CANDIDATES = 1 << 20
MAX_RRF_K = 1 << 20
#: the most documents a saved index may claim
MAX_DOCUMENTS = 1 << 40
_HYBRID_FILES = ("docs", "dense", "sparse_indptr", "sparse_indices", "sparse_values")


def _positive_int(value: object, name: str, limit: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= limit:
        msg = f"{name} must be an int in [1, {limit}], got {value!r:.40}."
        raise ValueError(msg)
    return value


@dataclass(frozen=True)
class _State(DocRows):
    """One version of every store, aligned by row; published whole, never edited after."""

    dense: Rows
    sparse: SparseRows
    colbert: ColbertRows | None
    #: repr(filter) -> rows it matches (over ``metadatas``; filled by searches)
    masks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @classmethod
    def empty(cls, dim: int, vocab_size: int, colbert: ColbertRows | None) -> _State:
        return cls(**DocRows.empty_fields(), dense=Rows((dim,), np.float32),
                   sparse=SparseRows(vocab_size), colbert=colbert)


class HybridIndex(M3Index):
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
        colbert_dir: directory for the temporary ColBERT vector file (default: the system
            temp dir); the file has no name there, so nothing is left behind.

    Example:
        >>> from bge_integrations import BGEM3Embedder, HybridIndex
        >>> index = HybridIndex(BGEM3Embedder("BAAI/bge-m3"))  # doctest: +SKIP
        >>> index.add(["BGE-M3 is multilingual.", "Paris is in France."],
        ...           ids=["m3", "paris"])  # doctest: +SKIP
        ['m3', 'paris']
        >>> index.search("which model is multilingual?", k=1)[0].id  # doctest: +SKIP
        'm3'
    """

    def __init__(self, m3: M3Encoder, *, store_colbert: bool = True, colbert_dtype: str = "float32",
                 candidates: int = 100, rrf_k: int = DEFAULT_RRF_K,
                 colbert_dir: str | os.PathLike | None = None) -> None:
        if colbert_dtype not in COLBERT_DTYPES:
            msg = f"colbert_dtype must be one of {COLBERT_DTYPES}, got {colbert_dtype!r}."
            raise ValueError(msg)
        self._m3 = require_m3(m3, "HybridIndex")
        self.store_colbert = bool(store_colbert)
        self.colbert_dtype = colbert_dtype
        self.candidates = _positive_int(candidates, "candidates", MAX_CANDIDATES)
        self.rrf_k = _positive_int(rrf_k, "rrf_k", MAX_RRF_K)
        self._dim = int(m3.dim)
        self._vocab_size = int(m3.vocab_size)
        self._writer = threading.Lock()  # one add/delete at a time; searches never wait
        colbert = (ColbertRows(self._dim, colbert_dtype, colbert_dir)
                   if self.store_colbert else None)
        self._state = _State.empty(self._dim, self._vocab_size, colbert)

    def __len__(self) -> int:
        return len(self._state.row_of)

    # -- writing -----------------------------------------------------------------------------
    def add(self, texts: Sequence[str], metadatas: Sequence[Mapping[str, Any] | None] | None = None,
            ids: Sequence[str] | None = None) -> list[str]:
        """Add documents, replacing those whose id already exists (upsert).

        The call changes the index completely or not at all: an error or an interrupt at
        any point leaves it as it was.

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
            state = self._state
            colbert = state.colbert
            dense, sparse = [], []
            for lo in range(0, len(batch.texts), _ENCODE_CHUNK):
                chunk = batch.texts[lo: lo + _ENCODE_CHUNK]
                out = self._m3.encode_documents(chunk, dense=True, sparse=True,
                                                colbert=self.store_colbert)
                docs = self._encoded(out.dense, out.sparse, out.colbert, len(chunk),
                                     "the embedder's ")
                dense.append(docs.dense)
                sparse.append(docs.sparse)
                if colbert is not None:  # spilled to disk chunk by chunk: bounded RAM
                    colbert = colbert.appended(docs.colbert)
            self._state = self._added(state, batch, np.concatenate(dense),
                                      sp.vstack(sparse, format="csr"), colbert)
        return batch.ids

    def add_embeddings(self, texts: Sequence[str], *, dense: Any, sparse: Any, colbert: Any,
                       metadatas: Sequence[Mapping[str, Any] | None] | None = None,
                       ids: Sequence[str] | None = None) -> list[str]:
        """Add documents with vectors computed elsewhere (no model call); upsert like :meth:`add`.

        The vectors must come from this index's model, as ``m3.encode_documents(texts,
        dense=True, sparse=True, colbert=True)`` returns them (e.g. from Ray workers). They are
        checked as :meth:`add` checks the embedder's output, before anything changes.

        Args:
            texts: the document texts.
            dense: float32 ``(n, dim)``.
            sparse: one ``{token id: weight}`` dict per text.
            colbert: one ``(n_tokens, dim)`` array per text (``None`` when the index was made
                with ``store_colbert=False``).
            metadatas: one JSON-serialisable dict (or None) per text.
            ids: one distinct id per text; default fresh ``uuid4().hex`` ids.

        Returns:
            The ids, in input order.

        Raises:
            ValueError: a shape, a length, a token id or a value (NaN, inf) is wrong; the
                message names the field and the row.

        Example:
            >>> out = m3.encode_documents(texts)  # doctest: +SKIP
            >>> index.add_embeddings(texts, dense=out.dense, sparse=out.sparse,
            ...                      colbert=out.colbert)  # doctest: +SKIP
        """
        batch = DocBatch.build(texts, metadatas, ids)
        docs = self._encoded(dense, sparse, colbert, len(batch.texts), "")
        if not batch.texts:
            return []
        with self._writer:
            state = self._state
            vectors = None if state.colbert is None else state.colbert.appended(docs.colbert)
            self._state = self._added(state, batch, docs.dense, docs.sparse, vectors)
        return batch.ids

    def _encoded(self, dense: Any, sparse: Any, colbert: Any, n: int, prefix: str
                 ) -> EncodedDocs:
        return EncodedDocs.build(dense, sparse, colbert, n=n, dim=self._dim,
                                 vocab_size=self._vocab_size, store_colbert=self.store_colbert,
                                 prefix=prefix)

    def _added(self, state: _State, batch: DocBatch, dense: np.ndarray, sparse: sp.csr_matrix,
               colbert: ColbertRows | None) -> _State:
        """``state`` with the batch appended and the rows it replaces marked dead."""
        return self._settled(dataclasses.replace(
            state, **state.appended_fields(batch), dense=state.dense.appended(dense),
            sparse=state.sparse.extended(sparse), colbert=colbert, masks={}))

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; unknown ids are ignored. Returns how many were removed.

        Example:
            >>> index.delete(["doc-1"])  # doctest: +SKIP
            1
        """
        id_list = validate_ids(ids)
        with self._writer:
            state = self._state
            fields = state.deleted_fields(id_list)
            if fields is None:
                return 0
            self._state = self._settled(dataclasses.replace(state, **fields))
        return len(state.row_of) - len(fields["row_of"])

    def _settled(self, state: _State) -> _State:
        """``state`` with dead rows purged once they outnumber live ones (at least
        ``COMPACT_MIN_DEAD``), and the ColBERT spill file rewritten once it is mostly dead."""
        if state.needs_compaction:
            keep = state.live_rows()
            state = _State(**state.compacted_fields(keep), dense=state.dense.taken(keep),
                           sparse=SparseRows(self._vocab_size, state.sparse.matrix(keep)),
                           colbert=None if state.colbert is None else state.colbert.taken(keep))
        if state.colbert is not None:
            colbert = state.colbert.settled(state.alive)
            if colbert is not state.colbert:
                state = dataclasses.replace(state, colbert=colbert, masks=state.masks)
        return state

    # -- reading -----------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[Record]:
        """The stored documents with these ids, in the order asked; unknown ids are skipped.

        Example:
            >>> index.get(["doc-1"])[0].metadata  # doctest: +SKIP
            {'year': 2024}
        """
        id_list = validate_ids(ids)
        state = self._state
        return [state.record(state.row_of[i]) for i in id_list if i in state.row_of]

    def iter_embeddings(self, batch_size: int = 256) -> Iterator[EmbeddingBatch]:
        """Every stored document with its stored vectors, ``batch_size`` at a time; no model call.

        The batches come from the state published when this is called: adds and deletes
        that run meanwhile do not show in them. ColBERT vectors come back as float32 (from
        ``colbert_dtype="float16"`` storage too). :func:`~.transfer.copy_index` moves them
        into another index.

        Example:
            >>> batch = next(index.iter_embeddings(batch_size=2))  # doctest: +SKIP
            >>> batch.ids, batch.dense.shape, batch.colbert[0].shape  # doctest: +SKIP
            (['m3', 'paris'], (2, 1024), (9, 1024))
        """
        size = check_batch_size(batch_size)
        state = self._state
        sparse = state.sparse.matrix()
        return state.exported(size, lambda rows: {
            "dense": state.dense.view[rows], "sparse": sparse_dicts(sparse[rows]),
            "colbert": None if state.colbert is None else state.colbert.gather(rows)})

    def search_many(self, queries: Sequence[str], k: int = 10,
                    filter: Mapping[str, Any] | None = None,
                    mode: str | RetrievalMode = RetrievalMode.HYBRID,
                    weights: Sequence[float] = DEFAULT_WEIGHTS,
                    fusion: str | Fusion = Fusion.WEIGHTED) -> list[list[Hit]]:
        """:meth:`search` for many queries: one model call, scores computed in blocks.

        A search reads one published state of the index: it never waits for a writer or a
        save, and sees each ``add``/``delete`` completely or not at all.

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
        state = self._state
        allowed = np.flatnonzero(self._matching(state, req.filter))
        if not allowed.size:
            return [[] for _ in req.queries]
        results: list[list[Hit]] = []
        for lo in range(0, len(req.queries), _QUERY_BLOCK):
            hi = min(lo + _QUERY_BLOCK, len(req.queries))
            dense = sparse = None
            if req.needs_dense:
                dense = (encoded.dense[lo:hi] @ state.dense.view.T)[:, allowed]
            if req.needs_sparse:
                q_sparse = sparse_to_csr(encoded.sparse[lo:hi], self._vocab_size)
                sparse = state.sparse.scores(q_sparse)[:, allowed]
            for j in range(hi - lo):
                q_colbert = encoded.colbert[lo + j] if req.needs_colbert else None
                results.append(self._rank(state, req, allowed,
                                          None if dense is None else dense[j],
                                          None if sparse is None else sparse[j], q_colbert))
        return results

    @staticmethod
    def _matching(state: _State, node: FilterNode | None) -> np.ndarray:
        """Live rows that match the filter (masks are cached with the state they were made on)."""
        if node is None:
            return state.alive
        key = repr(node)  # type-aware, unlike ==: {"x": 1} and {"x": True} differ
        mask = state.masks.get(key)
        if mask is None:
            mask = filter_mask(node, state.metadatas.view)
            if len(state.masks) >= _MASK_CACHE:
                state.masks.clear()
            state.masks[key] = mask
        return state.alive & mask

    def _rank(self, state: _State, req: SearchRequest, allowed: np.ndarray,
              dense: np.ndarray | None, sparse: np.ndarray | None,
              q_colbert: np.ndarray | None) -> list[Hit]:
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
                docs = state.colbert.gather(allowed[cand])
                parts[name] = colbert_scores([q_colbert], docs)[0] if docs else np.zeros(0)
            else:
                parts[name] = (dense if name == "dense" else sparse)[cand]
        fused = fuse(req.mode, req.fusion, parts, req.weights, self.rrf_k)
        hits = []
        for pos in top_k(fused, req.k).tolist():
            record = state.record(int(allowed[cand[pos]]))
            hits.append(Hit(record.id, record.text, record.metadata, float(fused[pos]),
                            {name: float(parts[name][pos]) for name in parts}))
        return hits

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """Save to ``directory`` atomically (JSON + .npy, no pickle).

        Only live documents are written, from the state published when the call started:
        adds, deletes and searches go on meanwhile. A crash mid-save leaves the previous save
        readable; a full disk raises ``OSError`` and changes nothing. The manifest records
        where the model was loaded from, so :meth:`load` needs no model argument.

        Example:
            >>> index.save("my-index")  # doctest: +SKIP
            >>> HybridIndex.load("my-index")  # doctest: +SKIP
        """
        fingerprint = model_fingerprint(self._m3, self.store_colbert)
        state = self._state
        save_directory(directory, lambda folder: self._write(folder, state, fingerprint))

    def _write(self, folder: Path, state: _State, fingerprint: dict[str, Any]) -> dict[str, Any]:
        rows = state.live_rows()
        write_docs(folder, state.ids.view[rows].tolist(), state.texts.view[rows].tolist(),
                   state.metadatas.view[rows].tolist())
        write_array(folder / FILES["dense"], state.dense.view[rows])
        matrix = state.sparse.matrix(rows)
        write_array(folder / FILES["sparse_indptr"], matrix.indptr.astype(np.int64))
        write_array(folder / FILES["sparse_indices"], matrix.indices.astype(np.int32))
        write_array(folder / FILES["sparse_values"], matrix.data.astype(np.float32))
        if state.colbert is not None:
            with (folder / FILES["colbert"]).open("xb") as f:
                offsets = state.colbert.write_npy(f, rows)
            write_array(folder / FILES["colbert_offsets"], offsets)
        config = {"store_colbert": self.store_colbert, "colbert_dtype": self.colbert_dtype,
                  "candidates": self.candidates, "rrf_k": self.rrf_k}
        return {"model": fingerprint, "config": config, "count": len(rows)}

    @classmethod
    def load(cls, directory: str | os.PathLike, m3: M3Encoder | None = None, *,
             model: str | None = None, verify: bool = True,
             colbert_dir: str | os.PathLike | None = None, **embedder_options: Any) -> HybridIndex:
        """Open an index saved with :meth:`save`.

        Args:
            directory: the saved index.
            m3: the embedder; it must be the model that built the index. By default the
                recorded model (or ``model``) is loaded with ``embedder_options``.
            model: where to load the model from when it is not where it was (same model).
            verify: check every file's sha256 (sizes and structure are always checked).
            colbert_dir: directory for ColBERT vectors of documents added after loading.
            **embedder_options: ``device``, ``dtype``, ... for the model loaded here.

        Raises:
            IndexFileError: the directory holds no index, or a file is missing, truncated,
                corrupted or crafted.
            ModelMismatchError: ``m3`` is not the model that built the index.

        Example:
            >>> index = HybridIndex.load("my-index", BGEM3Embedder("BAAI/bge-m3"))  # doctest: +SKIP
            >>> index = HybridIndex.load("my-index", device="cpu")  # doctest: +SKIP
        """
        with open_directory(directory, verify=verify) as (manifest, folder):
            config = {"store_colbert": manifest_field(manifest, "config.store_colbert", bool),
                      "colbert_dtype": manifest_field(manifest, "config.colbert_dtype", str,
                                                      choices=COLBERT_DTYPES),
                      "candidates": manifest_field(manifest, "config.candidates", int, low=1,
                                                   high=MAX_CANDIDATES),
                      "rrf_k": manifest_field(manifest, "config.rrf_k", int, low=1,
                                              high=MAX_RRF_K)}
            count = manifest_field(manifest, "count", int, low=0, high=MAX_DOCUMENTS)
            if m3 is None:
                source = model or saved_source(manifest.get("model"))
                from ..core.m3 import BGEM3Embedder

                m3 = BGEM3Embedder(source, **embedder_options)
            elif model is not None or embedder_options:
                msg = "pass either an embedder or model=/embedder options to load(), not both."
                raise TypeError(msg)
            index = cls(m3, colbert_dir=colbert_dir, **config)
            check_model(manifest.get("model"), m3)
            expected = {FILES[k] for k in _HYBRID_FILES}
            if index.store_colbert:
                expected |= {FILES["colbert"], FILES["colbert_offsets"]}
            expect_files(manifest, expected, directory)
            with reading(directory):
                index._state = index._read(folder, count)
            verify_manifest(manifest, directory)
        return index

    def _read(self, folder: Path, count: int) -> _State:
        batch = read_docs(folder, count)
        dense = load_array(folder / FILES["dense"], dtype="float32", shape=(count, self._dim))
        indptr = load_array(folder / FILES["sparse_indptr"], dtype="int64", shape=(count + 1,))
        indices = load_array(folder / FILES["sparse_indices"], dtype="int32", shape=(None,))
        values = load_array(folder / FILES["sparse_values"], dtype="float32",
                            shape=(len(indices),))
        # comparisons only (no arithmetic that could wrap); scipy trusts these arrays
        if (indptr[0] != 0 or indptr[-1] != len(indices) or np.any(indptr[1:] < indptr[:-1])
                or (len(indices) and (indices.min() < 0 or indices.max() >= self._vocab_size))
                or not np.all(np.isfinite(values)) or np.any(values < 0)):
            msg = "the sparse arrays do not form a valid (documents, vocabulary) matrix."
            raise ValueError(msg)
        if not np.all(np.isfinite(dense)):
            msg = f"{FILES['dense']} holds NaN or inf."
            raise ValueError(msg)
        state = _State.empty(self._dim, self._vocab_size, self._state.colbert)
        colbert = state.colbert
        if colbert is not None:
            offsets = load_array(folder / FILES["colbert_offsets"], dtype="int64",
                                 shape=(count + 1,))
            vectors = load_array(folder / FILES["colbert"], dtype=self.colbert_dtype,
                                 shape=(None, self._dim), mmap=True)
            if offsets[0] != 0 or offsets[-1] != len(vectors) or np.any(
                    offsets[1:] <= offsets[:-1]):
                msg = (f"{FILES['colbert_offsets']} does not split the {len(vectors)} vectors "
                       f"of {FILES['colbert']} into {count} rows of at least one token.")
                raise ValueError(msg)
            colbert = colbert.loaded(vectors, offsets)
        return _State(**DocRows.loaded_fields(batch.ids, batch.texts, batch.metadatas),
                      dense=Rows.of(dense),
                      sparse=SparseRows(self._vocab_size,
                                        sp.csr_matrix((values, indices, indptr),
                                                      shape=(count, self._vocab_size))),
                      colbert=colbert)
