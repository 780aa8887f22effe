"""QdrantHybridIndex and QdrantDenseIndex: the :class:`~.index.HybridIndex` and
:class:`~.dense.DenseIndex` contracts on a Qdrant collection.

For corpora that outgrow one machine: the same calls work on an in-process client
(``location=":memory:"`` or ``path=...``) and, unchanged, on a Qdrant server (``url=...`` or
your own ``client=QdrantClient(...)``). Requires the ``[qdrant]`` extra; ``qdrant_client`` is
imported when an index is created, never by ``import bge_integrations``. Both share the
collection plumbing of :class:`QdrantCollection`; :func:`~.transfer.copy_index` moves an
embedded index into a collection and back without re-embedding.

Collection layout: named vectors ``dense`` (DOT), and for BGE-M3 ``sparse`` (dot product, no
IDF) and, with ``store_colbert``, ``colbert`` (multivector, MAX_SIM comparator, no HNSW graph:
it only re-scores). Each point's id is ``uuid5`` of the document id; its payload is
``{"id", "text", "metadata"}``, and filters address ``metadata.<field>``.

Model identity: a collection an index creates (or finds empty) records the model's
fingerprint in its metadata under :data:`FINGERPRINT_KEY` (name, sizes, a probe text's
embeddings: what a saved embedded index records, :mod:`.identity`). Opening a collection
that records another model raises :class:`~.errors.ModelMismatchError` before anything is read
or written; a collection without a record (made by other tools) is opened as it is.

Search: ``dense`` / ``sparse`` modes are one Qdrant query each. ``colbert`` / ``hybrid`` prefetch
the top ``max(candidates, k)`` dense and sparse candidates and re-score that union on the
server under each mode (one batched request). The per-mode scores then go through the same
:func:`~.fusion.fuse` as the embedded index, so weighted scores are FlagEmbedding's
``colbert+sparse+dense`` (Qdrant's MAX_SIM sum is divided by the query length to give
ColBERT's mean) and RRF uses the same constant. Qdrant writes are per batch, not
transactional: inputs are validated before the first write, and an ``add`` that fails midway
can be re-run with the same ids (upsert).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..core.scores import DEFAULT_WEIGHTS, sparse_to_arrays
from .contract import (
    DenseEncoder,
    DocBatch,
    EmbeddingBatch,
    Hit,
    M3Encoder,
    NotPicklable,
    Record,
    SearchRequest,
    check_batch_size,
    require_m3,
    validate_ids,
)
from .dense_base import DenseBase
from .errors import ModelMismatchError
from .filters import And, Condition, FilterNode
from .fusion import DEFAULT_RRF_K, Fusion, RetrievalMode, fuse, top_k
from .identity import (
    check_dense_model,
    check_model,
    dense_fingerprint,
    model_fingerprint,
    saved_source,
)
from .locks import RWLock
from .m3_index import M3Index
from .vectors import EncodedDocs, check_dense

__all__ = ["QdrantCollection", "QdrantHybridIndex", "QdrantDenseIndex", "FINGERPRINT_KEY",
           "to_qdrant_filter", "point_id", "make_client", "collection_layout"]

#: key of the model fingerprint in a collection's metadata
FINGERPRINT_KEY = "bge_integrations"
#: namespace of the uuid5 point ids derived from document ids
ID_NAMESPACE = uuid.UUID("6f1c8e0e-5b1a-4e0b-9a43-7d2b5f3c1e21")
#: texts encoded and upserted per batch
_BATCH = 64
_RANGE_FIELDS = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}


def point_id(doc_id: str) -> str:
    """The Qdrant point id of a document id (Qdrant ids must be unsigned ints or UUIDs).

    Example:
        >>> len(point_id("doc-1"))
        36
    """
    return str(uuid.uuid5(ID_NAMESPACE, doc_id))


def _models() -> Any:
    try:
        from qdrant_client import models
    except ImportError:
        msg = ("The Qdrant indexes need qdrant-client: pip install 'bge-integrations[qdrant]'.")
        raise ImportError(msg) from None
    return models


def make_client(*, location: str | None = None, url: str | None = None,
                path: str | None = None, api_key: str | None = None) -> Any:
    """A ``QdrantClient``: a server (``url``, ``api_key``), an in-process collection store
    (``path``), or ``location=":memory:"`` (the default when nothing is given).

    Example:
        >>> make_client().collection_exists("docs")  # doctest: +SKIP
        False
    """
    _models()  # the install hint when qdrant-client is missing
    from qdrant_client import QdrantClient

    if location is None and url is None and path is None:
        location = ":memory:"
    return QdrantClient(location=location, url=url, path=path, api_key=api_key)


def collection_layout(client: Any, name: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The named dense/multi vectors and the sparse vectors of a collection (name -> params),
    or ``None`` when it does not exist.

    Example:
        >>> vectors, sparse = collection_layout(client, "docs")  # doctest: +SKIP
        >>> "colbert" in vectors  # doctest: +SKIP
        True
    """
    if not client.collection_exists(name):
        return None
    params = client.get_collection(name).config.params
    vectors = params.vectors if isinstance(params.vectors, dict) else {}
    return vectors, dict(params.sparse_vectors or {})


#: numbers up to this magnitude are compared as floats exactly (53-bit mantissa)
_EXACT_FLOAT = 2**53


def _equals(key: str, value: Any, models: Any) -> Any:
    """Type-aware equality as the embedded index has it: ``2024`` equals ``2024.0``, ``True``
    equals neither ``1`` nor ``"true"``.

    Qdrant's match compares ints only with ints, so numbers match by a closed range, which
    covers int and float payloads alike; an int beyond 2**53 (not exact as a float) matches by
    value, so it finds equal ints only.
    """
    if isinstance(value, bool | str) or (isinstance(value, int) and abs(value) > _EXACT_FLOAT):
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))
    return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))


def _condition(node: Condition, models: Any) -> Any:
    key = f"metadata.{node.field}"
    if node.op == "$eq":
        return _equals(key, node.value, models)
    if node.op == "$ne":
        return models.Filter(must_not=[_equals(key, node.value, models)])
    if node.op == "$in":
        values = list(node.value)  # type: ignore[arg-type]
        if all(isinstance(v, str) for v in values):
            return models.FieldCondition(key=key, match=models.MatchAny(any=values))
        return models.Filter(should=[_equals(key, v, models) for v in values])
    bound = {_RANGE_FIELDS[node.op]: node.value}
    return models.FieldCondition(key=key, range=models.Range(**bound))


def to_qdrant_filter(node: FilterNode | None) -> Any:
    """A parsed filter (:func:`~.filters.parse_filter`) as a ``qdrant_client.models.Filter``.

    Example:
        >>> from bge_integrations.retrieval.filters import parse_filter
        >>> to_qdrant_filter(parse_filter({"lang": "en"})).must[0].key
        'metadata.lang'
    """
    if node is None:
        return None
    models = _models()
    if isinstance(node, Condition):
        return models.Filter(must=[_condition(node, models)])
    children = [to_qdrant_filter(c) for c in node.children]
    return models.Filter(must=children) if isinstance(node, And) else models.Filter(should=children)


class QdrantCollection(NotPicklable, ABC):
    """The Qdrant side both Qdrant indexes share: the client, the collection (created, or its
    layout checked), upserts of ``{"id", "text", "metadata"}`` payloads, ``delete``, ``get``,
    ``len``, batched queries and the scroll export. Subclasses name their vectors.

    One process's writes are exclusive and its reads shared (:class:`~.locks.RWLock`); Qdrant
    itself has no multi-call transactions, so inputs are validated before the first write.
    """

    collection_name: str
    _dim: int
    #: what an existing collection must have been created with, for the layout error
    _created_with = "the model"

    def _connect(self, collection_name: str, client: Any, location: str | None,
                 url: str | None, path: str | None, api_key: str | None, exact: bool) -> None:
        """Use ``client`` (or make one) and create or check the collection."""
        models = _models()
        if client is None:
            client = make_client(location=location, url=url, path=path, api_key=api_key)
        elif any(v is not None for v in (location, url, path, api_key)):
            msg = "pass either client or location/url/path/api_key, not both."
            raise ValueError(msg)
        self._client = client
        self._models = models
        self.collection_name = collection_name
        self._params = models.SearchParams(exact=bool(exact))
        self._lock = RWLock()
        self._ensure_collection()

    @property
    def client(self) -> Any:
        """The ``QdrantClient``."""
        return self._client

    def _vectors_config(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The named vectors and the sparse vectors of a new collection."""
        m = self._models
        return {"dense": m.VectorParams(size=self._dim, distance=m.Distance.DOT)}, None

    def _layout_problems(self, vectors: dict[str, Any], sparse: dict[str, Any]) -> list[str]:
        """What an existing collection lacks (or has too much) for this index."""
        dense = vectors.get("dense")
        return [] if dense is not None and dense.size == self._dim else [
            f"a {self._dim}-d 'dense' vector"]

    def _ensure_collection(self) -> None:
        layout = collection_layout(self._client, self.collection_name)
        if layout is None:
            vectors, sparse = self._vectors_config()
            self._client.create_collection(self.collection_name, vectors_config=vectors,
                                           sparse_vectors_config=sparse)
            self._record_model()
            return
        info = self._client.get_collection(self.collection_name)
        stored = (getattr(info.config, "metadata", None) or {}).get(FINGERPRINT_KEY)
        problems = self._layout_problems(*layout)
        if stored is not None:
            try:
                self._check_model(stored)
            except ValueError as exc:  # ModelMismatchError, or a malformed record
                also = (f" Its layout differs too: this index needs {', '.join(problems)}."
                        if problems else "")
                msg = (f"Qdrant collection {self.collection_name!r} was written by another "
                       f"model: {exc}{also}")
                raise type(exc)(msg) from None
        if problems:
            msg = (f"Qdrant collection {self.collection_name!r} exists with other settings: this "
                   f"index needs {', '.join(problems)}. Use another collection_name, or "
                   f"{self._created_with} it was created with.")
            raise ValueError(msg)
        if stored is None and self._client.count(self.collection_name, exact=True).count == 0:
            self._record_model()

    def _record_model(self) -> None:
        self._client.update_collection(self.collection_name,
                                       metadata={FINGERPRINT_KEY: self._fingerprint()})

    @abstractmethod
    def _fingerprint(self) -> dict[str, Any]:
        """What identifies the model behind the collection (:mod:`.identity`)."""

    @abstractmethod
    def _check_model(self, stored: object) -> None:
        """Raise ``ModelMismatchError`` unless this index's model made ``stored``."""

    def __len__(self) -> int:
        with self._lock.read():
            return self._client.count(self.collection_name, exact=True).count

    # -- writing -----------------------------------------------------------------------------
    def add(self, texts: Sequence[str], metadatas: Sequence[Mapping[str, Any] | None] | None = None,
            ids: Sequence[str] | None = None) -> list[str]:
        """Embed and upsert documents, replacing those whose id exists, as the embedded index's
        ``add`` does; returns their ids.

        Example:
            >>> index.add(["a text"], metadatas=[{"year": 2024}], ids=["doc-1"])  # doctest: +SKIP
            ['doc-1']
        """
        # ``embedder`` is the index's own (M3Index / DenseBase)
        batch = DocBatch.build(texts, metadatas, ids,
                               max_texts=self.embedder.max_texts_per_call)  # type: ignore[attr-defined]
        for lo in range(0, len(batch.texts), _BATCH):
            self._upsert(batch, lo, self._model_points(batch.texts[lo: lo + _BATCH]))
        return batch.ids

    @abstractmethod
    def _model_points(self, texts: list[str]) -> list[dict[str, Any]]:
        """The named vectors of ``texts``' points, from the model (its output checked)."""

    def _upsert(self, batch: DocBatch, lo: int, vectors: Sequence[dict[str, Any]]) -> None:
        """Write documents ``lo .. lo + len(vectors)`` of ``batch``, one vector dict each."""
        points = [self._models.PointStruct(
            id=point_id(batch.ids[lo + i]), vector=vector,
            payload={"id": batch.ids[lo + i], "text": batch.texts[lo + i],
                     "metadata": batch.metadatas[lo + i]}) for i, vector in enumerate(vectors)]
        with self._lock.write():
            self._client.upsert(self.collection_name, points=points, wait=True)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; unknown ids are ignored. Returns how many were removed."""
        points = [point_id(i) for i in validate_ids(ids)]
        with self._lock.write():
            found = self._client.retrieve(self.collection_name, ids=points, with_payload=False)
            if found:
                self._client.delete(self.collection_name, wait=True,
                                    points_selector=self._models.PointIdsList(
                                        points=[p.id for p in found]))
        return len(found)

    # -- reading -----------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[Record]:
        """The stored documents with these ids, in the order asked; unknown ids are skipped."""
        id_list = validate_ids(ids)
        with self._lock.read():
            found = self._client.retrieve(self.collection_name,
                                          ids=[point_id(i) for i in id_list], with_payload=True)
        by_id = {p.payload["id"]: p.payload for p in found}
        return [Record(i, by_id[i]["text"], by_id[i]["metadata"]) for i in id_list if i in by_id]

    def _query(self, requests: list[Any]) -> list[Any]:
        """The answers of one batched Qdrant request."""
        with self._lock.read():
            return self._client.query_batch_points(self.collection_name, requests=requests)

    def iter_embeddings(self, batch_size: int = 256) -> Iterator[EmbeddingBatch]:
        """Every stored document with its stored vectors, ``batch_size`` at a time; no model call.

        Pages through the collection by point id (``scroll``), vectors exactly as stored
        (float32). A Qdrant collection has no snapshot reads: documents upserted or deleted
        during the export may or may not show in it. :func:`~.transfer.copy_index` moves the
        batches into another index.

        Raises:
            ValueError: a point was not written by these indexes (no ``{"id", "text",
                "metadata"}`` payload, or a vector missing).

        Example:
            >>> batch = next(index.iter_embeddings(batch_size=100))  # doctest: +SKIP
            >>> batch.dense.dtype  # doctest: +SKIP
            dtype('float32')
        """
        return self._pages(check_batch_size(batch_size))

    def _pages(self, size: int) -> Iterator[EmbeddingBatch]:
        offset = None
        while True:
            with self._lock.read():
                points, offset = self._client.scroll(self.collection_name, limit=size,
                                                     offset=offset, with_payload=True,
                                                     with_vectors=True)
            if points:
                yield self._exported(points)
            if offset is None:
                return

    def _exported(self, points: list[Any]) -> EmbeddingBatch:
        for p in points:
            if not isinstance(p.payload, dict) or not {"id", "text", "metadata"} <= set(
                    p.payload) or not isinstance(p.vector, dict) or "dense" not in p.vector:
                msg = (f"point {p.id} of Qdrant collection {self.collection_name!r} has no "
                       "{'id', 'text', 'metadata'} payload or no 'dense' vector: it was not "
                       "written by a bge_integrations index, so it cannot be exported.")
                raise ValueError(msg)
        dense = np.asarray([p.vector["dense"] for p in points], dtype=np.float32)
        return EmbeddingBatch([p.payload["id"] for p in points],
                              [p.payload["text"] for p in points],
                              [p.payload["metadata"] for p in points],
                              dense.reshape(len(points), self._dim),
                              **self._stored_vectors(points))

    def _stored_vectors(self, points: list[Any]) -> dict[str, Any]:
        """The :class:`EmbeddingBatch` fields beyond ``dense`` of these points."""
        return {}

    @staticmethod
    def _hit(payload: dict[str, Any], score: float, scores: dict[str, float]) -> Hit:
        return Hit(payload["id"], payload["text"], payload["metadata"], score, scores)


class QdrantHybridIndex(QdrantCollection, M3Index):
    """BGE-M3 hybrid search on a Qdrant collection, with :class:`~.index.HybridIndex`'s contract.

    Args:
        m3: the :class:`~bge_integrations.BGEM3Embedder` that encodes documents and queries.
        collection_name: the collection (created when missing, checked when present).
        client: a ready ``QdrantClient``; otherwise one is made from ``location``/``url``/
            ``path``/``api_key`` (default ``location=":memory:"``).
        location: ``":memory:"`` for an in-process collection.
        url: a Qdrant server, e.g. ``"http://localhost:6333"``.
        path: a local directory for an in-process persistent collection.
        api_key: the server's API key.
        store_colbert: keep ColBERT multivectors (needed by ``colbert`` mode).
        candidates: dense and sparse candidates per query re-scored in ``colbert``/``hybrid``.
        rrf_k: the constant of reciprocal rank fusion.
        exact: exact (brute-force) dense search on a server instead of HNSW.

    Example:
        >>> index = QdrantHybridIndex(m3, location=":memory:")  # doctest: +SKIP
        >>> index.add(["BGE-M3 is multilingual."], ids=["m3"])  # doctest: +SKIP
        ['m3']
        >>> index.search("multilingual model", k=1, mode="sparse")[0].id  # doctest: +SKIP
        'm3'
    """

    _created_with = "the model and store_colbert"

    def __init__(self, m3: M3Encoder, *, collection_name: str = "bge-m3", client: Any = None,
                 location: str | None = None, url: str | None = None, path: str | None = None,
                 api_key: str | None = None, store_colbert: bool = True, candidates: int = 100,
                 rrf_k: int = DEFAULT_RRF_K, exact: bool = False) -> None:
        m3 = require_m3(m3, "QdrantHybridIndex")
        for name, value in (("candidates", candidates), ("rrf_k", rrf_k)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                msg = f"{name} must be a positive int, got {value!r}."
                raise ValueError(msg)
        self._m3 = m3
        self.store_colbert = bool(store_colbert)
        self.candidates = candidates
        self.rrf_k = rrf_k
        self._dim = int(m3.dim)
        self._vocab_size = int(m3.vocab_size)
        self._connect(collection_name, client, location, url, path, api_key, exact)

    def _fingerprint(self) -> dict[str, Any]:
        return model_fingerprint(self._m3, self.store_colbert)

    def _check_model(self, stored: object) -> None:
        if isinstance(stored, dict) and stored.get("heads") == ["dense"]:
            msg = (f"it holds the dense vectors of {saved_source(stored)!r}, not a BGE-M3 "
                   "model's; open it with QdrantDenseIndex.")
            raise ModelMismatchError(msg)
        check_model(stored, self._m3)

    def _vectors_config(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        m = self._models
        vectors, _ = super()._vectors_config()
        if self.store_colbert:
            vectors["colbert"] = m.VectorParams(
                size=self._dim, distance=m.Distance.DOT, hnsw_config=m.HnswConfigDiff(m=0),
                multivector_config=m.MultiVectorConfig(
                    comparator=m.MultiVectorComparator.MAX_SIM))
        return vectors, {"sparse": m.SparseVectorParams()}

    def _layout_problems(self, vectors: dict[str, Any], sparse: dict[str, Any]) -> list[str]:
        problems = super()._layout_problems(vectors, sparse)
        if "sparse" not in sparse:
            problems.append("a 'sparse' vector")
        if ("colbert" in vectors) != self.store_colbert:
            problems.append(f"{'a' if self.store_colbert else 'no'} 'colbert' multivector "
                            f"(store_colbert={self.store_colbert})")
        return problems

    # -- writing -----------------------------------------------------------------------------
    def _model_points(self, texts: list[str]) -> list[dict[str, Any]]:
        out = self._m3.encode_documents(texts, dense=True, sparse=True,
                                        colbert=self.store_colbert)
        return self._point_vectors(self._encoded(out.dense, out.sparse, out.colbert, len(texts),
                                                 "the embedder's "))

    def add_embeddings(self, texts: Sequence[str], *, dense: Any, sparse: Any, colbert: Any,
                       metadatas: Sequence[Mapping[str, Any] | None] | None = None,
                       ids: Sequence[str] | None = None) -> list[str]:
        """Upsert documents with vectors computed elsewhere (see
        :meth:`HybridIndex.add_embeddings`); every input is checked before the first write.

        Example:
            >>> out = m3.encode_documents(texts)  # doctest: +SKIP
            >>> index.add_embeddings(texts, dense=out.dense, sparse=out.sparse,
            ...                      colbert=out.colbert)  # doctest: +SKIP
        """
        batch = DocBatch.build(texts, metadatas, ids)
        docs = self._encoded(dense, sparse, colbert, len(batch.texts), "")
        for lo in range(0, len(batch.texts), _BATCH):
            hi = min(lo + _BATCH, len(batch.texts))
            self._upsert(batch, lo, self._point_vectors(EncodedDocs(
                docs.dense[lo:hi], docs.sparse[lo:hi],
                None if docs.colbert is None else docs.colbert[lo:hi])))
        return batch.ids

    def _encoded(self, dense: Any, sparse: Any, colbert: Any, n: int, prefix: str
                 ) -> EncodedDocs:
        return EncodedDocs.build(dense, sparse, colbert, n=n, dim=self._dim,
                                 vocab_size=self._vocab_size, store_colbert=self.store_colbert,
                                 prefix=prefix)

    def _point_vectors(self, docs: EncodedDocs) -> list[dict[str, Any]]:
        """One Qdrant vector dict per document."""
        m = self._models
        vectors = []
        for i in range(len(docs.dense)):
            row = docs.sparse[i]
            vector = {"dense": docs.dense[i].tolist(),
                      "sparse": m.SparseVector(indices=row.indices.tolist(),
                                               values=row.data.tolist())}
            if docs.colbert is not None:
                vector["colbert"] = docs.colbert[i].tolist()
            vectors.append(vector)
        return vectors

    def _stored_vectors(self, points: list[Any]) -> dict[str, Any]:
        sparse = [p.vector.get("sparse") for p in points]  # a server may omit an empty one
        colbert = None
        if self.store_colbert:
            missing = [p.id for p in points if "colbert" not in p.vector]
            if missing:
                msg = (f"point {missing[0]} of Qdrant collection {self.collection_name!r} has "
                       "no 'colbert' vector; export it with store_colbert=False.")
                raise ValueError(msg)
            colbert = [np.asarray(p.vector["colbert"], dtype=np.float32) for p in points]
        return {"sparse": [{} if s is None else dict(zip(s.indices, s.values, strict=True))
                           for s in sparse], "colbert": colbert}

    # -- reading -----------------------------------------------------------------------------
    def search_many(self, queries: Sequence[str], k: int = 10,
                    filter: Mapping[str, Any] | None = None,
                    mode: str | RetrievalMode = RetrievalMode.HYBRID,
                    weights: Sequence[float] = DEFAULT_WEIGHTS,
                    fusion: str | Fusion = Fusion.WEIGHTED) -> list[list[Hit]]:
        """:meth:`search` for many queries: one model call and one batched Qdrant request."""
        req = SearchRequest.build(queries, k=k, filter=filter, mode=mode, weights=weights,
                                  fusion=fusion, has_colbert=self.store_colbert)
        if not req.queries:
            return []
        encoded = self._m3.encode_queries(req.queries, dense=req.needs_dense,
                                          sparse=req.needs_sparse, colbert=req.needs_colbert)
        qfilter = to_qdrant_filter(req.filter)
        per_query = [self._requests(req, encoded, j, qfilter) for j in range(len(req.queries))]
        responses = self._query([r for group in per_query for r in group])
        results, pos = [], 0
        for j, group in enumerate(per_query):
            answers = responses[pos: pos + len(group)]
            pos += len(group)
            q_tokens = len(encoded.colbert[j]) if req.needs_colbert else 1
            results.append(self._rank(req, [a.points for a in answers], q_tokens))
        return results

    def _queries(self, encoded: Any, j: int) -> dict[str, Any]:
        out = {}
        if encoded.dense is not None:
            out["dense"] = encoded.dense[j].tolist()
        if encoded.sparse is not None:
            indices, values = sparse_to_arrays(encoded.sparse[j])
            out["sparse"] = self._models.SparseVector(indices=indices.tolist(),
                                                      values=values.tolist())
        if encoded.colbert is not None:
            out["colbert"] = encoded.colbert[j].tolist()
        return out

    def _requests(self, req: SearchRequest, encoded: Any, j: int, qfilter: Any) -> list[Any]:
        m = self._models
        vectors = self._queries(encoded, j)
        if req.mode in (RetrievalMode.DENSE, RetrievalMode.SPARSE):
            name = req.mode.value
            return [m.QueryRequest(query=vectors[name], using=name, filter=qfilter, limit=req.k,
                                   params=self._params, with_payload=True)]
        limit = max(self.candidates, req.k)
        prefetch = [m.Prefetch(query=vectors[name], using=name, filter=qfilter, limit=limit,
                               params=self._params) for name in ("dense", "sparse")]
        return [m.QueryRequest(prefetch=prefetch, query=vectors[name], using=name,
                               filter=qfilter, limit=2 * limit, with_payload=i == 0)
                for i, name in enumerate(req.parts)]

    def _rank(self, req: SearchRequest, answers: list[list[Any]], q_tokens: int) -> list[Hit]:
        candidates = answers[0]  # the first request's answer covers every candidate
        if not candidates:
            return []
        parts = {}
        for name, points in zip(req.parts, answers, strict=False):
            score_of = {p.id: p.score for p in points}
            scale = 1.0 / q_tokens if name == "colbert" else 1.0  # MAX_SIM sums, ColBERT averages
            parts[name] = np.array([score_of.get(p.id, 0.0) * scale for p in candidates])
        fused = fuse(req.mode, req.fusion, parts, req.weights, self.rrf_k)
        return [self._hit(candidates[pos].payload, float(fused[pos]),
                          {n: float(parts[n][pos]) for n in parts})
                for pos in top_k(fused, req.k).tolist()]


class QdrantDenseIndex(QdrantCollection, DenseBase):
    """Dense search on a Qdrant collection, with :class:`~.dense.DenseIndex`'s contract.

    For any non-M3 model (``BGEEmbedder``): one named vector ``dense`` (DOT) per point, so scores
    are the inner products ``DenseIndex`` computes. The payload and filters are those of
    :class:`QdrantHybridIndex`; a collection that ``write_qdrant`` filled from a dense model
    opens as one.

    Args:
        embedder: the :class:`~bge_integrations.BGEEmbedder` that encodes documents and queries.
        collection_name: the collection (created when missing, checked when present).
        client: a ready ``QdrantClient``; otherwise one is made from ``location``/``url``/
            ``path``/``api_key`` (default ``location=":memory:"``).
        location: ``":memory:"`` for an in-process collection.
        url: a Qdrant server, e.g. ``"http://localhost:6333"``.
        path: a local directory for an in-process persistent collection.
        api_key: the server's API key.
        exact: exact (brute-force) search on a server instead of HNSW.

    Example:
        >>> from bge_integrations import BGEEmbedder
        >>> index = QdrantDenseIndex(BGEEmbedder("BAAI/bge-small-en-v1.5"))  # doctest: +SKIP
        >>> index.add(["Pandas eat bamboo."], ids=["panda"])  # doctest: +SKIP
        ['panda']
        >>> index.search("what do pandas eat?", k=1)[0].id  # doctest: +SKIP
        'panda'
    """

    def __init__(self, embedder: DenseEncoder, *, collection_name: str = "bge-dense",
                 client: Any = None, location: str | None = None, url: str | None = None,
                 path: str | None = None, api_key: str | None = None,
                 exact: bool = False) -> None:
        self._use_embedder(embedder)
        self._connect(collection_name, client, location, url, path, api_key, exact)

    def _fingerprint(self) -> dict[str, Any]:
        return dense_fingerprint(self._embedder)

    def _check_model(self, stored: object) -> None:
        check_dense_model(stored, self._embedder)

    def _layout_problems(self, vectors: dict[str, Any], sparse: dict[str, Any]) -> list[str]:
        extra = sorted({*vectors, *sparse} - {"dense"})
        return super()._layout_problems(vectors, sparse) + (
            [f"no {', '.join(map(repr, extra))} vectors (a BGE-M3 collection: open it with "
             "QdrantHybridIndex)"] if extra else [])

    # -- writing -----------------------------------------------------------------------------
    def _model_points(self, texts: list[str]) -> list[dict[str, Any]]:
        return self._point_vectors(check_dense(self._embedder.encode_documents(texts),
                                               n=len(texts), dim=self._dim,
                                               name="the embedder's output"))

    def add_embeddings(self, texts: Sequence[str], embeddings: Any, *,
                       metadatas: Sequence[Mapping[str, Any] | None] | None = None,
                       ids: Sequence[str] | None = None) -> list[str]:
        """Upsert documents with vectors computed elsewhere (see
        :meth:`DenseIndex.add_embeddings`); every input is checked before the first write.

        Example:
            >>> index.add_embeddings(texts, embedder.encode_documents(texts))  # doctest: +SKIP
        """
        batch = DocBatch.build(texts, metadatas, ids)
        vectors = check_dense(embeddings, n=len(batch.texts), dim=self._dim, name="embeddings")
        for lo in range(0, len(batch.texts), _BATCH):
            self._upsert(batch, lo, self._point_vectors(vectors[lo: lo + _BATCH]))
        return batch.ids

    @staticmethod
    def _point_vectors(vectors: np.ndarray) -> list[dict[str, Any]]:
        return [{"dense": row.tolist()} for row in vectors]

    # -- reading -----------------------------------------------------------------------------
    def search_many(self, queries: Sequence[str], k: int = 10,
                    filter: Mapping[str, Any] | None = None,
                    mode: str | RetrievalMode = RetrievalMode.DENSE) -> list[list[Hit]]:
        """:meth:`search` for many queries: one model call and one batched Qdrant request.

        Example:
            >>> [len(h) for h in index.search_many(["panda", "France"], k=1)]  # doctest: +SKIP
            [1, 1]
        """
        req = self._request(queries, k, filter, mode)
        if not req.queries:
            return []
        encoded = self._embedder.encode_queries(req.queries)
        m, qfilter = self._models, to_qdrant_filter(req.filter)
        answers = self._query([m.QueryRequest(query=vector.tolist(), using="dense",
                                              filter=qfilter, limit=req.k, params=self._params,
                                              with_payload=True) for vector in encoded])
        return [[self._hit(p.payload, p.score, {"dense": p.score}) for p in answer.points]
                for answer in answers]
