"""write_qdrant: the collection QdrantHybridIndex would build, idempotent reruns, refusals
before any write. The datasets are built from one-process outputs (no actors needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("ray.data")
qdrant_client = pytest.importorskip("qdrant_client")

from bge_integrations import BGEEmbedder, BGEM3Embedder  # noqa: E402
from bge_integrations.distributed import columns as C  # noqa: E402
from bge_integrations.distributed import write_qdrant  # noqa: E402
from bge_integrations.distributed.qdrant_sink import (  # noqa: E402
    FINGERPRINT_KEY,
    Plan,
    prepare_collection,
    write_in_tasks,
)
from bge_integrations.retrieval import QdrantHybridIndex  # noqa: E402
from bge_integrations.retrieval.errors import ModelMismatchError  # noqa: E402
from bge_integrations.retrieval.qdrant import point_id  # noqa: E402
from bge_integrations.tiny_models import build_tiny_model  # noqa: E402

TEXTS = [f"passage {i} about " + " ".join(f"topic{(i * 5 + j) % 23}" for j in range(i % 9 + 2))
         for i in range(30)]
IDS = [f"p{i}" for i in range(len(TEXTS))]
TOL = 1e-5


def embedded_table(texts: list[str], out, dim: int, *, colbert: bool) -> pa.Table:
    """What embed_dataset adds, computed in this process."""
    n = len(texts)
    dense = out if isinstance(out, np.ndarray) else out.dense
    table = pa.table({"id": IDS[:n], "text": texts, "lang": ["en", "de"] * (n // 2),
                      "year": list(range(2000, 2000 + n))})
    table = table.append_column(C.EMBEDDING, C.dense_column(dense, np.ones(n, bool)))
    if not isinstance(out, np.ndarray):
        for name, col in zip((C.SPARSE_INDICES, C.SPARSE_VALUES), C.sparse_columns(out.sparse),
                             strict=True):
            table = table.append_column(name, col)
        if colbert:
            table = table.append_column(C.COLBERT, C.colbert_column(out.colbert, dim,
                                                                    np.float32))
    return table.append_column(C.NUM_TOKENS, pa.array([3] * n, pa.int32()))


def blocks(ray, table: pa.Table, n_blocks: int = 3):
    step = -(-len(table) // n_blocks)
    return ray.data.from_arrow([table.slice(lo, step) for lo in range(0, len(table), step)])


@pytest.fixture(scope="module")
def m3_out(m3: BGEM3Embedder):
    return m3.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)


@pytest.fixture(scope="module")
def m3_table(m3_out, m3: BGEM3Embedder) -> pa.Table:
    return embedded_table(TEXTS, m3_out, m3.dim, colbert=True)


def stored(client, collection: str, ids: list[str]):
    points = client.retrieve(collection, ids=[point_id(i) for i in ids], with_vectors=True,
                             with_payload=True)
    return {p.payload["id"]: p for p in points}


def assert_points_equal(client, collection: str, out) -> None:
    points = stored(client, collection, IDS)
    assert len(points) == len(IDS) == client.count(collection, exact=True).count
    for i, doc_id in enumerate(IDS):
        p = points[doc_id]
        assert p.payload["text"] == TEXTS[i]
        assert p.payload["metadata"] == {"lang": ["en", "de"][i % 2], "year": 2000 + i}
        np.testing.assert_allclose(p.vector["dense"], out.dense[i], atol=TOL, rtol=0)
        sparse = dict(zip(p.vector["sparse"].indices, p.vector["sparse"].values, strict=False))
        assert sparse.keys() == out.sparse[i].keys()
        np.testing.assert_allclose([sparse[k] for k in out.sparse[i]],
                                   list(out.sparse[i].values()), atol=TOL, rtol=0)
        np.testing.assert_allclose(p.vector["colbert"], out.colbert[i], atol=TOL, rtol=0)


def test_written_collection_searches_like_qdrant_hybrid_index(ray_cluster, tiny_m3: str,
                                                               m3: BGEM3Embedder, m3_out,
                                                               m3_table: pa.Table) -> None:
    client = qdrant_client.QdrantClient(location=":memory:")
    summary = write_qdrant(blocks(ray_cluster, m3_table), "docs", model=tiny_m3, client=client,
                           batch_size=4)
    assert (summary.rows, summary.tokens) == (len(TEXTS), 3 * len(TEXTS))
    assert_points_equal(client, "docs", m3_out)
    fingerprint = client.get_collection("docs").config.metadata[FINGERPRINT_KEY]
    assert fingerprint["dim"] == m3.dim and "colbert" in fingerprint["heads"]

    ours = QdrantHybridIndex(m3, collection_name="docs", client=client)
    reference = QdrantHybridIndex(m3, collection_name="reference", client=client)
    reference.add(TEXTS, metadatas=[{"lang": ["en", "de"][i % 2], "year": 2000 + i}
                                    for i in range(len(TEXTS))], ids=IDS)
    for query in ("topic3 topic8", "passage 7"):
        for mode in ("hybrid", "sparse", "colbert"):
            got = ours.search(query, k=5, mode=mode)
            want = reference.search(query, k=5, mode=mode)
            assert [h.id for h in got] == [h.id for h in want]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want],
                                       atol=TOL, rtol=0)
    assert [h.id for h in ours.search("passage", k=3, filter={"lang": "de"})] and all(
        h.metadata["lang"] == "de" for h in ours.search("passage", k=3, filter={"lang": "de"}))


class FailsOnUpsert:
    """A QdrantClient whose n-th upsert raises (a sink interrupted midway)."""

    def __init__(self, client, n: int) -> None:
        self._client, self._left = client, n

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def upsert(self, *args, **kwargs):
        self._left -= 1
        if self._left == 0:
            raise ConnectionError("network down")
        return self._client.upsert(*args, **kwargs)


def test_interrupted_write_rerun_gives_the_same_collection(ray_cluster, tiny_m3: str, m3_out,
                                                           m3_table: pa.Table,
                                                           tmp_path: Path) -> None:
    client = qdrant_client.QdrantClient(path=str(tmp_path / "q"))
    with pytest.raises(ConnectionError):
        write_qdrant(blocks(ray_cluster, m3_table), "docs", model=tiny_m3,
                     client=FailsOnUpsert(client, 3), batch_size=4)
    assert 0 < client.count("docs", exact=True).count < len(TEXTS)
    for _ in range(2):  # the rerun, and one more: the collection does not change
        write_qdrant(blocks(ray_cluster, m3_table, 4), "docs", model=tiny_m3, client=client)
        assert_points_equal(client, "docs", m3_out)
    client.close()


def test_writes_from_ray_tasks(ray_cluster, tiny_m3: str, m3: BGEM3Embedder, m3_out,
                               m3_table: pa.Table, tmp_path: Path) -> None:
    """The url path: Ray tasks connect and upsert block by block (one at a time here, as an
    in-process Qdrant directory admits one process at a time)."""
    target = {"path": str(tmp_path / "q")}
    client = qdrant_client.QdrantClient(**target)
    prepare_collection(client, "docs", m3, m3=True, colbert=True)
    client.close()
    plan = Plan("docs", m3.dim, m3.vocab_size, "id", "text", ("lang", "year"), sparse=True,
                colbert=True, chunk=8)
    summary = write_in_tasks(blocks(ray_cluster, m3_table), target, plan, concurrency=1)
    assert summary.rows == len(TEXTS)
    client = qdrant_client.QdrantClient(**target)
    assert_points_equal(client, "docs", m3_out)
    client.close()


@pytest.fixture(scope="module")
def other_m3(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny BGE-M3 of the same shape with other weights."""
    return str(build_tiny_model("xlm-roberta", tmp_path_factory.mktemp("other") / "bge-m3",
                                seed=1))


def test_refuses_another_model_or_size_before_writing(ray_cluster, tiny_m3: str, tiny_bert: str,
                                                      other_m3: str, m3_table: pa.Table,
                                                      bert_embedder: BGEEmbedder) -> None:
    client = qdrant_client.QdrantClient(location=":memory:")
    write_qdrant(blocks(ray_cluster, m3_table.slice(0, 6)), "docs", model=tiny_m3,
                 client=client)
    with pytest.raises(ModelMismatchError, match="'docs' was written by another model"):
        write_qdrant(blocks(ray_cluster, m3_table), "docs", model=other_m3, client=client)
    bert_table = embedded_table(TEXTS, bert_embedder.encode_documents(TEXTS), 32,
                                colbert=False)
    with pytest.raises(ValueError, match="another model"):
        write_qdrant(blocks(ray_cluster, bert_table), "docs", model=tiny_bert, client=client)
    assert client.count("docs", exact=True).count == 6

    models = qdrant_client.models
    client.create_collection("small", vectors_config={
        "dense": models.VectorParams(size=8, distance=models.Distance.DOT)})
    with pytest.raises(ValueError, match="this index needs a 32-d 'dense' vector"):
        write_qdrant(blocks(ray_cluster, bert_table), "small", model=tiny_bert, client=client)
    assert client.count("small", exact=True).count == 0


def test_bad_datasets_are_refused(ray_cluster, tiny_m3: str, m3_table: pa.Table) -> None:
    client = qdrant_client.QdrantClient(location=":memory:")
    no_sparse = m3_table.drop_columns([C.SPARSE_INDICES, C.SPARSE_VALUES])
    with pytest.raises(ValueError, match=r"no 'sparse_indices', 'sparse_values' column.*its "
                                         r"columns are: id, text"):
        write_qdrant(blocks(ray_cluster, no_sparse), "docs", model=tiny_m3, client=client)
    errors = pa.array([None] * 5 + ["row id='p5': column 'text' holds NoneType None"]
                      + [None] * (len(TEXTS) - 6))
    with pytest.raises(ValueError, match="row id='p5'.*was not embedded"):
        write_qdrant(ray_cluster.data.from_arrow(m3_table.append_column(C.ERROR, errors)),
                     "docs", model=tiny_m3, client=client)
    assert client.count("docs", exact=True).count == 0
    with pytest.raises(ValueError, match="exactly one of url, location, path or client"):
        write_qdrant(blocks(ray_cluster, m3_table), "docs", model=tiny_m3, client=client,
                     path="/tmp/x")
