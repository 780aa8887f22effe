"""rerank_dataset on the session's Ray cluster: every row's score equals one-process
``compute_score`` of its pair; input columns survive; bad options fail on the driver."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("ray.data")

from bge_integrations.distributed import rerank_dataset  # noqa: E402

PAIRS = [(f"question {i % 5}: what about w{i % 7}?",
          f"passage {i} " + " ".join(f"w{(i * 3 + j) % 11}" for j in range(i % 9 + 1)))
         for i in range(30)]


def test_scores_equal_one_process(ray_cluster, tiny_reranker: str, reranker) -> None:
    items = [{"id": f"pair-{i}", "query": q, "passage": p, "source": i % 4}
             for i, (q, p) in enumerate(PAIRS)]
    random.Random(2).shuffle(items)
    ds = ray_cluster.data.from_items(items, override_num_blocks=3)
    table = pa.concat_tables(ray_cluster.get(rerank_dataset(
        ds, tiny_reranker, concurrency=1, batch_size=8, device="cpu").to_arrow_refs()))
    by_id = {r["id"]: r for r in items}
    assert sorted(table.column("id").to_pylist()) == sorted(by_id)
    for row in table.select(["id", "query", "passage", "source"]).to_pylist():
        assert row == by_id[row["id"]]
    order = [int(i.split("-")[1]) for i in table.column("id").to_pylist()]
    want = reranker.compute_score([PAIRS[i] for i in order])
    got = table.column("score").to_numpy()
    assert table.schema.field("score").type == pa.float32()
    np.testing.assert_allclose(got, want, atol=1e-5 * max(1.0, float(np.abs(want).max())),
                               rtol=0)


def test_bad_input_fails_on_the_driver(ray_cluster, tiny_reranker: str) -> None:
    ds = ray_cluster.data.from_items([{"id": "1", "question": "q", "passage": "p"}])
    with pytest.raises(ValueError, match=r"no 'query' column to read; its columns are: id, "
                                         r"question, passage\. Pass query_column="):
        rerank_dataset(ds, tiny_reranker)
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'normalise' for BGEReranker"):
        rerank_dataset(ds, tiny_reranker, query_column="question", normalise=True)
