"""``bge-integrations ingest`` on the session's Ray cluster: Parquet and index targets, the
summary line, bad rows and bad targets as one error line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("ray.data")

from bge_integrations import BGEM3Embedder  # noqa: E402
from bge_integrations.cli import main  # noqa: E402
from bge_integrations.cli.ingest import parse_qdrant_target  # noqa: E402
from bge_integrations.distributed import colbert_arrays, dense_matrix, sparse_dicts  # noqa: E402

TEXTS = [f"line {i}: " + "alpha beta gamma delta "[: 4 + 3 * i] for i in range(12)]


def write_jsonl(path: Path, texts: list) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": f"r{i}", "text": text, "lang": "en" if i % 2 else "fr"})
                    + "\n")
    return path


def test_ingest_to_parquet(ray_cluster, tiny_m3: str, m3: BGEM3Embedder, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "docs.jsonl", TEXTS)
    out = tmp_path / "out"
    code = main(["ingest", str(source), "--model", tiny_m3, "--to", str(out), "--workers", "1",
                 "--colbert", "--batch-size", "5"])
    err = capsys.readouterr().err
    assert code == 0, err
    table = pq.read_table(out)
    ids = table.column("id").to_pylist()
    order = [int(i[1:]) for i in ids]
    assert sorted(order) == list(range(len(TEXTS)))
    assert table.column("lang").to_pylist() == ["en" if i % 2 else "fr" for i in order]
    ref = m3.encode_documents(TEXTS, colbert=True)
    np.testing.assert_allclose(dense_matrix(table.column("embedding")), ref.dense[order],
                               atol=1e-5, rtol=0)
    sparse = sparse_dicts(table.column("sparse_indices"), table.column("sparse_values"))
    assert [set(s) for s in sparse] == [set(ref.sparse[i]) for i in order]
    for got, i in zip(colbert_arrays(table.column("colbert")), order, strict=False):
        np.testing.assert_allclose(got, ref.colbert[i], atol=1e-5, rtol=0)
    tokens = sum(len(t) for t in m3.tokenizer(TEXTS)["input_ids"])
    assert f"ingested {len(TEXTS)} rows ({tokens} tokens) in " in err
    assert "rows/s -> Parquet files in" in err


def test_bad_row_is_one_error_line(ray_cluster, tiny_bert: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "docs.jsonl", ["fine", None, "also fine"])
    code = main(["ingest", str(source), "--model", tiny_bert, "--to", str(tmp_path / "out"),
                 "--workers", "1"])
    last = capsys.readouterr().err.splitlines()[-1]  # after Ray's own log lines
    assert code == 1
    assert last.startswith("bge-integrations: error: row id='r1': column 'text' holds NoneType")


def test_bad_targets_and_inputs(ray_cluster, tiny_bert: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_qdrant_target("qdrant://localhost:6333/docs") == ("http://localhost:6333",
                                                                   "docs")
    assert parse_qdrant_target("qdrants://q.example.com/c") == ("https://q.example.com", "c")
    for bad in ("qdrant://host:6333", "qdrant://host/a/b", "http://host/c"):
        with pytest.raises(ValueError, match="qdrant://host:port/collection"):
            parse_qdrant_target(bad)
    source = write_jsonl(tmp_path / "docs.jsonl", ["x"])
    for argv, message in (
            ([str(tmp_path / "missing.jsonl"), "--to", str(tmp_path / "o")], "does not exist"),
            ([str(tmp_path / "docs.jsonl"), "--to", "s3://bucket/x"], "use qdrant://"),
            ([str(source), "--to", str(tmp_path / "o"), "--text-field", "body"],
             "no 'body' column to read; its columns are: id, text, lang")):
        assert main(["ingest", *argv, "--model", tiny_bert]) == 1
        assert message in capsys.readouterr().err


def test_ingest_to_index(ray_cluster, tiny_m3: str, m3: BGEM3Embedder, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """BGE-M3 -> a saved HybridIndex (ColBERT on without --colbert: the index keeps it)."""
    from bge_integrations import HybridIndex
    from bge_integrations.cli.indexes import open_index

    source = write_jsonl(tmp_path / "docs.jsonl", TEXTS)
    code = main(["ingest", str(source), "--model", tiny_m3, "--to-index",
                 str(tmp_path / "index"), "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    assert f"ingested {len(TEXTS)} rows" in capsys.readouterr().err
    index = open_index(tmp_path / "index", device="cpu")
    reference = HybridIndex(m3)
    reference.add(TEXTS, metadatas=[{"lang": "en" if i % 2 else "fr"} for i in range(12)],
                  ids=[f"r{i}" for i in range(12)])
    for mode in ("hybrid", "colbert"):
        got, want = index.search("line 3", k=5, mode=mode), reference.search("line 3", k=5,
                                                                               mode=mode)
        assert [(h.id, h.metadata) for h in got] == [(h.id, h.metadata) for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
