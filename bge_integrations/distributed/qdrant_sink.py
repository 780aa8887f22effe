"""write_qdrant: upsert an embedded Ray Dataset into a Qdrant collection, idempotently.

The collection has :class:`~bge_integrations.retrieval.QdrantHybridIndex`'s layout (named
vectors ``dense``, ``sparse`` and, when the dataset has a ``colbert`` column, ``colbert``) or,
for a dense model, :class:`~bge_integrations.retrieval.QdrantDenseIndex`'s (``dense`` only), so
that index on the same collection searches what was written. Each point's id is ``uuid5`` of
the row's id column (:func:`~bge_integrations.retrieval.qdrant.point_id`) and its payload is
``{"id", "text", "metadata"}``: a retried block, or a whole rerun after an interruption,
rewrites the same points, so the collection ends up the same.

Before any point is written the collection is checked: its vector size must be the model's,
and the model fingerprint stored in the collection's metadata (name, dimension, a probe
text's outputs) must match the model's; a new collection gets the fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..core.embedder import BGEEmbedder
from ..core.m3 import BGEM3Embedder
from ..core.m3_heads import is_m3_model
from ..retrieval.contract import DocBatch
from ..retrieval.qdrant import FINGERPRINT_KEY, QdrantDenseIndex, QdrantHybridIndex, point_id
from ..retrieval.vectors import EncodedDocs, check_dense
from . import columns as C
from ._ray import require_ray
from .actors import dataset_columns

if TYPE_CHECKING:
    import ray.data

__all__ = ["write_qdrant", "WriteSummary", "FINGERPRINT_KEY"]

_VECTOR_COLUMNS = set(C.OUTPUT_COLUMNS)


@dataclass(frozen=True)
class WriteSummary:
    """What a sink wrote.

    Attributes:
        rows: points upserted.
        tokens: tokens the model read for them (``None`` without a ``num_tokens`` column).
    """

    rows: int
    tokens: int | None = None


@dataclass(frozen=True)
class Plan:
    """How a batch becomes points; the same on the driver and in Ray tasks."""

    collection: str
    dim: int
    vocab_size: int
    id_column: str
    text_column: str
    metadata_columns: tuple[str, ...]
    sparse: bool
    colbert: bool
    chunk: int


def _models() -> Any:
    from qdrant_client import models

    return models


def batch_points(batch: pa.Table, plan: Plan) -> list[Any]:
    """The Qdrant points of one Arrow batch (validated whole before any is built).

    Raises:
        ValueError: a row was not embedded (``error`` column), an id is missing or repeated,
            a vector has another size or holds NaN/inf, a token id is out of the vocabulary,
            or metadata is not valid JSON.
    """
    C.refuse_unembedded(batch)
    ids = C.row_ids(batch, plan.id_column)
    metas = batch.select(list(plan.metadata_columns)).to_pylist()
    docs = DocBatch.build(batch.column(plan.text_column).to_pylist(), metas, ids)
    n = len(docs.texts)
    dense = C.dense_matrix(batch.column(C.EMBEDDING))
    m = _models()
    if not plan.sparse:
        vectors = [{"dense": row.tolist()}
                   for row in check_dense(dense, n=n, dim=plan.dim, name=C.EMBEDDING)]
    else:  # checked as QdrantHybridIndex.add_embeddings checks its input
        out = EncodedDocs.build(
            dense, C.sparse_dicts(batch.column(C.SPARSE_INDICES), batch.column(C.SPARSE_VALUES)),
            C.colbert_arrays(batch.column(C.COLBERT)) if plan.colbert else None, n=n,
            dim=plan.dim, vocab_size=plan.vocab_size, store_colbert=plan.colbert)
        ptr = out.sparse.indptr
        vectors = [{"dense": out.dense[i].tolist(),
                    "sparse": m.SparseVector(indices=out.sparse.indices[ptr[i]:ptr[i + 1]].tolist(),
                                             values=out.sparse.data[ptr[i]:ptr[i + 1]].tolist())}
                   for i in range(n)]
        for vector, tokens in zip(vectors, out.colbert or (), strict=False):
            vector["colbert"] = tokens.tolist()
    return [m.PointStruct(id=point_id(doc_id), vector=vector,
                          payload={"id": doc_id, "text": text, "metadata": meta})
            for doc_id, text, meta, vector in zip(docs.ids, docs.texts, docs.metadatas,
                                                  vectors, strict=False)]


def upsert_batch(client: Any, batch: pa.Table, plan: Plan) -> dict[str, int]:
    """Upsert one batch in chunks of ``plan.chunk`` points; its row and token counts
    (tokens -1 when the dataset has no ``num_tokens`` column)."""
    points = batch_points(batch, plan)
    for lo in range(0, len(points), plan.chunk):
        client.upsert(plan.collection, points=points[lo: lo + plan.chunk], wait=True)
    tokens = C.token_total(batch)
    return {"rows": len(points), "tokens": -1 if tokens is None else tokens}


def connect(target: Mapping[str, Any]) -> Any:
    """A ``QdrantClient`` for ``target`` (``url``/``api_key``, ``path`` or ``location``)."""
    from qdrant_client import QdrantClient

    return QdrantClient(**target)


def upsert_remote(batch: pa.Table, *, target: Mapping[str, Any], plan: Plan) -> pa.Table:
    """Ray task: connect, upsert one block, return its counts as a one-row table."""
    client = connect(target)
    try:
        counts = upsert_batch(client, batch, plan)
    finally:
        client.close()
    return pa.table({k: [v] for k, v in counts.items()})


def _summary(counts: Sequence[Mapping[str, int]]) -> WriteSummary:
    tokens = [c["tokens"] for c in counts]
    return WriteSummary(rows=sum(c["rows"] for c in counts),
                        tokens=None if not tokens or min(tokens) < 0 else sum(tokens))


def _embedder(model: str, m3: bool, core_options: Mapping[str, Any]) -> Any:
    options = {"device": "cpu", **core_options}
    return BGEM3Embedder(model, **options) if m3 else BGEEmbedder(model, **options)


def prepare_collection(client: Any, collection: str, embedder: Any, *, m3: bool,
                       colbert: bool) -> None:
    """Create the collection with the model's fingerprint, or check an existing one (the
    Qdrant index of the model's kind does both, see :mod:`~bge_integrations.retrieval.qdrant`).

    Raises:
        ModelMismatchError: the stored fingerprint is another model's (a ``ValueError``).
        ValueError: the collection's vectors have another size or layout.
    """
    if m3:
        QdrantHybridIndex(embedder, collection_name=collection, client=client,
                          store_colbert=colbert)
    else:
        QdrantDenseIndex(embedder, collection_name=collection, client=client)


def _plan(names: list[str], collection: str, embedder: Any, *, m3: bool, id_column: str,
          text_column: str, metadata_columns: Sequence[str] | None, chunk: int) -> Plan:
    needed = [id_column, text_column, C.EMBEDDING]
    if m3:
        needed += [C.SPARSE_INDICES, C.SPARSE_VALUES]
    missing = [n for n in needed if n not in names]
    if missing:
        hint = (" (embed it with embed_dataset; a BGE-M3 collection needs dense and sparse "
                "outputs)" if set(missing) & _VECTOR_COLUMNS else "")
        msg = (f"the dataset has no {', '.join(map(repr, missing))} column(s){hint}; its columns "
               f"are: {', '.join(names)}.")
        raise ValueError(msg)
    metadata_columns = C.metadata_names(names, id_column, text_column, metadata_columns)
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk <= 0:
        msg = f"batch_size must be a positive int (points per upsert), got {chunk!r}."
        raise ValueError(msg)
    return Plan(collection=collection, dim=int(embedder.dim),
                vocab_size=int(embedder.vocab_size) if m3 else 0, id_column=id_column,
                text_column=text_column, metadata_columns=tuple(metadata_columns), sparse=m3,
                colbert=m3 and C.COLBERT in names, chunk=chunk)


def write_qdrant(ds: ray.data.Dataset, collection: str, *, model: str,
                 url: str | None = None, api_key: str | None = None,
                 location: str | None = None, path: str | None = None, client: Any = None,
                 id_column: str = "id", text_column: str = "text",
                 metadata_columns: Sequence[str] | None = None, batch_size: int = 128,
                 concurrency: int | None = None, **core_options: Any) -> WriteSummary:
    """Upsert a dataset embedded by :func:`~.embed.embed_dataset` into a Qdrant collection.

    With ``url`` (a Qdrant server) Ray tasks upsert block by block in parallel, each with its
    own client; with ``location=":memory:"``, ``path`` (an in-process Qdrant) or ``client``
    this process upserts the blocks as Ray streams them. Every point's id derives from the
    row's ``id_column`` value, so a retried block or a rerun of an interrupted job writes
    the same points. The call returns only when every point is written; any failure raises.

    Args:
        ds: an embedded dataset (``embedding``; for BGE-M3 also ``sparse_indices`` /
            ``sparse_values``, and ``colbert`` if it should be stored).
        collection: the collection (created when missing).
        model: the model that embedded ``ds`` (loaded here on the CPU to fingerprint it).
        url: a Qdrant server, e.g. ``"http://localhost:6333"``.
        api_key: the server's API key.
        location: ``":memory:"`` for an in-process collection.
        path: a directory for an in-process persistent collection.
        client: a ready ``QdrantClient`` (used from this process).
        id_column: the column holding each row's unique id (str or int).
        text_column: the text column (stored in the payload).
        metadata_columns: payload metadata columns (default: every other input column).
        batch_size: points per upsert request.
        concurrency: most Ray write tasks at once (``url`` only).
        **core_options: the core options ``ds`` was embedded with that change the model's
            output (``pooling``, ``query_instruction``, ...), for the fingerprint.

    Returns:
        :class:`WriteSummary`: rows written, and tokens when ``ds`` has ``num_tokens``.

    Raises:
        ValueError: missing columns (listed), a collection with another vector size or model
            (before any write), a row without outputs, a bad id.

    Example:
        >>> write_qdrant(embedded, "docs", model="BAAI/bge-m3",  # doctest: +SKIP
        ...              url="http://localhost:6333")
        WriteSummary(rows=1000000, tokens=None)
    """
    require_ray()
    targets = [k for k, v in (("url", url), ("location", location), ("path", path),
                              ("client", client)) if v is not None]
    if len(targets) != 1:
        msg = (f"pass exactly one of url, location, path or client, got "
               f"{', '.join(targets) or 'none'}.")
        raise ValueError(msg)
    names = dataset_columns(ds)
    m3 = is_m3_model(model)
    embedder = _embedder(model, m3, core_options)
    plan = _plan(names, collection, embedder, m3=m3, id_column=id_column,
                 text_column=text_column, metadata_columns=metadata_columns, chunk=batch_size)
    if url is not None:
        target = {"url": url, "api_key": api_key}
        with closing(connect(target)) as admin:
            prepare_collection(admin, collection, embedder, m3=m3, colbert=plan.colbert)
        return write_in_tasks(ds, target, plan, concurrency)
    local = client if client is not None else connect({"location": location, "path": path})
    try:
        prepare_collection(local, collection, embedder, m3=m3, colbert=plan.colbert)
        return _summary([upsert_batch(local, batch, plan) for batch in ds.iter_batches(
            batch_size=None, batch_format="pyarrow")])
    finally:
        if client is None:
            local.close()


def write_in_tasks(ds: ray.data.Dataset, target: Mapping[str, Any], plan: Plan,
                   concurrency: int | None) -> WriteSummary:
    """Upsert every block of ``ds`` from Ray tasks that connect to ``target`` themselves."""
    from ray.data import TaskPoolStrategy

    counts = ds.map_batches(upsert_remote, batch_size=None, batch_format="pyarrow",
                            fn_kwargs={"target": dict(target), "plan": plan},
                            compute=TaskPoolStrategy(size=concurrency))
    return _summary(counts.take_all())

