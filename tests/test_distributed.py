"""embed_dataset on a local Ray cluster: every row equals one-process encoding, whatever the
blocks, actors and order; input columns survive; bad rows and dead actors are handled."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("ray.data")

from bge_integrations import BGEEmbedder, BGEM3Embedder  # noqa: E402
from bge_integrations.distributed import (  # noqa: E402
    colbert_arrays,
    dense_matrix,
    embed_dataset,
    sparse_dicts,
)
from bge_integrations.distributed.worker import (  # noqa: E402
    _CRASH_ONCE_ENV,
    EmbedWorker,
    Outputs,
)

TOL = 1e-5
TEXTS = [f"document {i}: " + " ".join(f"w{(i * 7 + j) % 31}" for j in range(i % 17 + 1))
         for i in range(48)]


def rows(texts: list[str] = TEXTS) -> list[dict]:
    return [{"id": f"doc-{i}", "text": t, "meta": {"n": i, "tag": f"t{i % 3}"}, "year": 2000 + i}
            for i, t in enumerate(texts)]


def run_blocks(ray, items: list[dict], model: str, *, blocks: int, **options
               ) -> list[pa.Table]:
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    return ray.get(embed_dataset(ds, model, device="cpu", **options).to_arrow_refs())


def run(ray, items: list[dict], model: str, *, blocks: int, **options) -> pa.Table:
    return pa.concat_tables(run_blocks(ray, items, model, blocks=blocks, **options))


def positions(table: pa.Table) -> list[int]:
    return [int(i.split("-")[1]) for i in table.column("id").to_pylist()]


def assert_inputs_kept(table: pa.Table, items: list[dict]) -> None:
    by_id = {r["id"]: r for r in items}
    assert sorted(table.column("id").to_pylist()) == sorted(by_id)  # every row exactly once
    for row in table.select(["id", "text", "meta", "year"]).to_pylist():
        assert row == by_id[row["id"]]


@pytest.fixture(scope="module")
def m3_reference(m3: BGEM3Embedder):
    return m3.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)


@pytest.mark.parametrize(("blocks", "actors", "batch_size", "shuffle"),
                         [(5, 2, 7, True), (1, 1, 64, False)])
def test_m3_rows_equal_one_process(ray_cluster, tiny_m3: str, m3_reference, blocks: int,
                                   actors: int, batch_size: int, shuffle: bool) -> None:
    items = rows()
    if shuffle:
        random.Random(0).shuffle(items)
    table = run(ray_cluster, items, tiny_m3, blocks=blocks, concurrency=actors,
                batch_size=batch_size, colbert=True)
    assert_inputs_kept(table, items)
    order = positions(table)
    ref = m3_reference
    np.testing.assert_allclose(dense_matrix(table.column("embedding")), ref.dense[order],
                               atol=TOL, rtol=0)
    sparse = sparse_dicts(table.column("sparse_indices"), table.column("sparse_values"))
    for got, pos in zip(sparse, order, strict=False):
        assert set(got) == set(ref.sparse[pos])
        assert max(abs(got[k] - ref.sparse[pos][k]) for k in got) <= TOL
    for got, pos in zip(colbert_arrays(table.column("colbert")), order, strict=False):
        np.testing.assert_allclose(got, ref.colbert[pos], atol=TOL, rtol=0)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)


def test_bert_rows_equal_and_bad_rows_collected(ray_cluster, tiny_bert: str,
                                                bert_embedder: BGEEmbedder) -> None:
    items = rows()
    items[2]["text"] = None
    items[5]["text"] = 17
    # a text column of mixed types reaches the actors as Python objects, block by block
    blocks = run_blocks(ray_cluster, items, tiny_bert, blocks=3, concurrency=1, batch_size=16,
                        token_counts=True, on_error="collect")
    assert {tuple(t.column_names) for t in blocks} == {
        ("id", "text", "meta", "year", "embedding", "num_tokens", "error")}
    by_id = {r["id"]: r for t in blocks for r in t.to_pylist()}
    assert sorted(by_id) == sorted(r["id"] for r in items)
    assert "holds NoneType" in by_id["doc-2"]["error"]
    assert "holds int 17" in by_id["doc-5"]["error"]
    for bad in ("doc-2", "doc-5"):
        assert by_id[bad]["embedding"] is None and by_id[bad]["num_tokens"] is None
    good = [i for i in range(len(TEXTS)) if i not in (2, 5)]
    ref = bert_embedder.encode_documents([TEXTS[i] for i in good])
    tokens = bert_embedder.tokenizer([TEXTS[i] for i in good])["input_ids"]
    for j, i in enumerate(good):
        row = by_id[f"doc-{i}"]
        assert row["error"] is None and row["num_tokens"] == len(tokens[j])
        np.testing.assert_allclose(row["embedding"], ref[j], atol=TOL, rtol=0)


def test_worker_query_side_in_float16(tiny_bert: str, bert_embedder: BGEEmbedder) -> None:
    """The actor's class, called in this process: the query side and half-precision output."""
    worker = EmbedWorker(tiny_bert, Outputs(m3=False, side="query", output_dtype="float16"),
                         core_options={"device": "cpu"})
    table = worker(pa.table({"id": [r["id"] for r in rows()], "text": TEXTS}))
    assert table.schema.field("embedding").type == pa.list_(pa.float16(), 32)
    np.testing.assert_allclose(dense_matrix(table.column("embedding")),
                               bert_embedder.encode_queries(TEXTS), atol=1e-3, rtol=0)


def test_bad_row_fails_naming_its_id(tiny_bert: str) -> None:
    """In this process (the CLI test shows the same message ending a Ray job)."""
    worker = EmbedWorker(tiny_bert, Outputs(m3=False), core_options={"device": "cpu"})
    batch = pa.table({"id": ["doc-3", "doc-4"], "text": ["fine", None]})
    with pytest.raises(ValueError, match=r"^row id='doc-4': column 'text' holds NoneType None, "
                                         r"not a str; fix the input, or pass on_error='collect'"):
        worker(batch)


def test_killed_actor_is_restarted_and_rows_come_out_once(ray_cluster, tiny_bert: str,
                                                          bert_embedder: BGEEmbedder,
                                                          tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    env = {_CRASH_ONCE_ENV: f"{marker}:3"}  # the actor exits on its 3rd batch, once
    items = rows()
    random.Random(1).shuffle(items)
    table = run(ray_cluster, items, tiny_bert, blocks=6, concurrency=1, batch_size=4,
                ray_options={"runtime_env": {"env_vars": env}})
    assert marker.exists(), "the actor was not killed"
    assert_inputs_kept(table, items)  # the one actor was restarted, and no row is repeated
    np.testing.assert_allclose(dense_matrix(table.column("embedding")),
                               bert_embedder.encode_documents(TEXTS)[positions(table)],
                               atol=TOL, rtol=0)


def test_missing_column_lists_the_columns(ray_cluster, tiny_bert: str) -> None:
    ds = ray_cluster.data.from_items([{"id": "1", "body": "x"}])
    with pytest.raises(ValueError, match=r"no 'text' column.*columns are: id, body"):
        embed_dataset(ds, tiny_bert)


def test_bad_options_fail_on_the_driver(ray_cluster, tiny_bert: str, tiny_m3: str) -> None:
    ds = ray_cluster.data.from_items([{"id": "1", "text": "x"}])
    with pytest.raises(ValueError, match="sparse outputs need a BGE-M3 model"):
        embed_dataset(ds, tiny_bert, sparse=True)
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'devise'"):
        embed_dataset(ds, tiny_m3, devise="cpu")
    with pytest.raises(ValueError, match="on_error must be one of 'raise', 'collect'"):
        embed_dataset(ds, tiny_m3, on_error="skip")
    with pytest.raises(ValueError, match="concurrency must be"):
        embed_dataset(ds, tiny_m3, concurrency=0)
    clash = ray_cluster.data.from_items([{"id": "1", "text": "x", "embedding": [0.0]}])
    with pytest.raises(ValueError, match="already has column"):
        embed_dataset(clash, tiny_m3)


def test_ray_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch, tiny_bert: str) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'bge-integrations\[ray\]'"):
        embed_dataset(object(), tiny_bert)
