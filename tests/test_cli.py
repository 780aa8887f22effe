"""The ``bge-integrations`` command: each subcommand in process, the entry point in a subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close

import bge_integrations
from bge_integrations import HybridIndex, list_models
from bge_integrations.cli import main
from bge_integrations.cli.textio import read_records
from bge_integrations.core.resolve import ModelNotFoundError
from bge_integrations.offline import FALLBACK_MODEL, model_or_fallback

CORPUS = Path(bge_integrations.__file__).parent / "data" / "corpus.jsonl"
PROG = "bge-integrations"


@pytest.fixture(autouse=True)
def _tiny_models_from_the_session(monkeypatch: pytest.MonkeyPatch, tiny_cache: Path) -> None:
    monkeypatch.setenv("BGE_INTEGRATIONS_CACHE", str(tiny_cache))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def console_script() -> list[str]:
    script = Path(sys.executable).with_name(PROG)
    return [str(script)] if script.exists() else [sys.executable, "-m", "bge_integrations.cli"]


def assert_one_error_line(code: int, out: str, err: str, fragment: str) -> None:
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: ")
    assert fragment in lines[0]


# -- models -------------------------------------------------------------------------------------
def test_models_lists_every_registered_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["MODEL", "FAMILY", "POOLING", "DIM"]
    assert {spec.name for spec in list_models()} <= {line.split()[0] for line in lines[1:]}
    m3_row = next(line for line in lines if line.startswith("BAAI/bge-m3 "))
    assert m3_row.split()[1:4] == ["m3", "cls", "1024"]
    minilm_row = next(line for line in lines if line.startswith(FALLBACK_MODEL))
    assert minilm_row.split()[2] == "mean"


# -- embed --------------------------------------------------------------------------------------
def test_embed_documents_to_npy_equals_the_core(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path, bert_embedder) -> None:
    out_file = tmp_path / "corpus.npy"
    code, out, err = run(capsys, "embed", str(CORPUS), "-o", str(out_file), "--tiny",
                         "--device", "cpu")
    assert code == 0 and out == ""
    assert "--tiny" in err and "wrote 40 x 32" in err
    texts = [record.text for record in read_records(str(CORPUS))]
    assert_close(np.load(out_file), bert_embedder.encode_documents(texts))


def test_embed_query_side_from_stdin_to_stdout(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch,
                                               bert_embedder) -> None:
    queries = ["what is bge?", "how do pandas live?"]
    stdin = io.TextIOWrapper(io.BytesIO(("\n".join(queries) + "\n\n").encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, _ = run(capsys, "embed", "-", "-o", "-", "--side", "query", "--tiny",
                       "--device", "cpu")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["id"] for row in rows] == [0, 1]
    vectors = np.array([row["embedding"] for row in rows])
    assert_close(vectors, bert_embedder.encode_queries(queries))
    assert not np.allclose(vectors, bert_embedder.encode_documents(queries), atol=1e-3)


def test_embed_csv_keeps_ids_and_reads_the_text_column(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    source = tmp_path / "docs.csv"
    source.write_text('id,body,lang\na1,"Hello, world",en\nb2,Hallo Welt,de\n', encoding="utf-8")
    out_file = tmp_path / "docs.jsonl"
    code, _, _ = run(capsys, "embed", str(source), "-o", str(out_file), "--text-field", "body",
                     "--tiny", "--device", "cpu", "--batch-size", "1")
    assert code == 0
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["a1", "b2"]
    assert all(len(row["embedding"]) == 32 for row in rows)


BAD_INPUTS = {
    "bad_json.jsonl": ('{"text": "fine"}\n{"text": "broken"\n', "bad_json.jsonl:2: invalid JSON"),
    "no_text.jsonl": ('{"body": "x"}\n', "no_text.jsonl:1: no 'text' field (fields: body)"),
    "number.jsonl": ('{"text": "fine"}\n\n{"text": 5}\n',
                     "number.jsonl:3: the text must be a string"),
    "list.jsonl": ('["a", "b"]\n', "list.jsonl:1: expected a JSON object"),
    "ragged.csv": ("id,text\n1,a\n2,b,c\n", "ragged.csv:3: 3 fields, but the header has 2"),
    "no_column.csv": ("id,body\n1,a\n", "no 'text' column in the header (columns: id, body)"),
    "repeated.jsonl": ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n',
                       "id 'a' appears more than once"),
    "blank.txt": ("\n  \n", "blank.txt: no texts found"),
    "latin1.txt": (b"caf\xe9\n", "not UTF-8 text"),
    "data.xml": ("<a/>", "cannot tell the input format"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_malformed_input_is_one_error_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           name: str) -> None:
    content, fragment = BAD_INPUTS[name]
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "embed", str(path), "-o", str(tmp_path / "out.npy"), "--tiny")
    assert_one_error_line(code, out, err, fragment)


@pytest.mark.parametrize(("args", "fragment"), [
    (["embed", "missing.txt", "-o", "out.npy"], "missing.txt: no such file"),
    (["embed", str(CORPUS), "-o", "out.parquet"], "unknown output suffix"),
    (["embed", str(CORPUS), "-o", "no/such/dir/out.npy"], "does not exist"),
    (["embed", str(CORPUS), "-o", "out.npy", "--model", "acme/not-a-model"],
     "Unknown model 'acme/not-a-model'"),
    (["embed", str(CORPUS), "-o", "out.npy", "--model", "acme/not-a-model"],
     "pass --pooling (cls, mean or last_token)"),
    (["embed", str(CORPUS), "-o", "out.npy", "--model", "acme/not-a-model", "--pooling", "mean"],
     "Could not find model 'acme/not-a-model'. Tried:"),
    (["embed", str(CORPUS), "-o", "out.npy", "--model", "./no/such/model"],
     "model directory './no/such/model' does not exist"),
    (["index", "query", "no-such-index", "q"], "'no-such-index' does not exist"),
    (["index", "query", ".", "q"], "'.' holds no saved index"),
    (["index", "build", "missing.jsonl", "--out", "idx"], "missing.jsonl: no such file"),
    (["demo", "--model", "./no/such/model"], "Could not find model './no/such/model'"),
])
def test_bad_paths_and_models_are_one_error_line(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 args: list[str], fragment: str) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *args)
    assert_one_error_line(code, out, err, fragment)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["embed", "x.txt", "-o", "y.npy", "--batch-size", "0"],
                 ["index", "query", "idx", "q", "--weights", "1,2"],
                 ["embed", "x.txt"], []):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


# -- index ----------------------------------------------------------------------------------------
def test_dense_index_build_and_query(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     minilm_dir: str) -> None:
    index_dir = tmp_path / "dense"
    code, _, err = run(capsys, "index", "build", str(CORPUS), "--out", str(index_dir),
                       "--model", FALLBACK_MODEL, "--device", "cpu")
    assert code == 0 and "indexed 40 documents (DenseIndex)" in err

    question = "How can I mix exact keyword matches with meaning-based search?"
    code, out, _ = run(capsys, "index", "query", str(index_dir), question, "-k", "3", "--json")
    hits = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["id"] == "hybrid-01" and set(hits[0]["scores"]) == {"dense"}
    assert hits[0]["score"] > hits[1]["score"] > hits[2]["score"]

    code, out, _ = run(capsys, "index", "query", str(index_dir), question, "--filter",
                       "topic=bge", "--json")
    assert {json.loads(line)["metadata"]["topic"] for line in out.splitlines()} == {"bge"}

    code, out, _ = run(capsys, "index", "query", str(index_dir), question, "-k", "1")
    assert out.splitlines()[0].split()[2] == "hybrid-01"

    code, out, err = run(capsys, "index", "query", str(index_dir), question, "--mode", "sparse")
    assert_one_error_line(code, out, err, "is a dense index")


def test_hybrid_index_build_and_query_match_the_library(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path, m3) -> None:
    index_dir = tmp_path / "hybrid"
    code, _, err = run(capsys, "index", "build", str(CORPUS), "--out", str(index_dir), "--tiny",
                       "--model", "BAAI/bge-m3", "--device", "cpu")
    assert code == 0 and "(HybridIndex)" in err

    records = read_records(str(CORPUS))
    library = HybridIndex(m3)
    library.add([r.text for r in records], metadatas=[r.metadata for r in records],
                ids=[r.id for r in records])

    def query(*options: str) -> list[dict]:
        code, out, _ = run(capsys, "index", "query", str(index_dir), "sparse lexical weights",
                           "--json", *options)
        assert code == 0
        return [json.loads(line) for line in out.splitlines()]

    hits = query("-k", "4", "--filter", "topic=sparse")
    expected = library.search("sparse lexical weights", k=4, filter={"topic": "sparse"})
    assert [h["id"] for h in hits] == [h.id for h in expected]
    assert {h["metadata"]["topic"] for h in hits} == {"sparse"}
    assert set(hits[0]["scores"]) == {"dense", "sparse", "colbert"}
    assert hits[0]["score"] == pytest.approx(expected[0].score, abs=1e-5)

    sparse_only = query("--mode", "sparse", "-k", "3")
    expected = library.search("sparse lexical weights", k=3, mode="sparse")
    assert [h["id"] for h in sparse_only] == [h.id for h in expected]
    assert set(sparse_only[0]["scores"]) == {"sparse"}

    rrf = query("--fusion", "rrf", "--weights", "1,1,0", "-k", "3")
    expected = library.search("sparse lexical weights", k=3, fusion="rrf", weights=(1, 1, 0))
    assert [h["id"] for h in rrf] == [h.id for h in expected]

    subset = query("--filter", '{"topic": {"$in": ["bge", "rag"]}}', "--filter", "topic=bge")
    assert {h["metadata"]["topic"] for h in subset} == {"bge"}


def test_texts_without_ids_get_their_position(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("first note\n\nsecond note\nthird note\n", encoding="utf-8")
    code, _, _ = run(capsys, "index", "build", str(source), "--out", str(tmp_path / "idx"),
                     "--tiny", "--device", "cpu")
    assert code == 0
    code, out, _ = run(capsys, "index", "query", str(tmp_path / "idx"), "note", "--json")
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == ["0", "1", "2"]


# -- demo -----------------------------------------------------------------------------------------
def test_demo_with_a_tiny_m3_shows_the_three_scores(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "--tiny", "--model", "BAAI/bge-m3", "-k", "2",
                         "--query", "sparse weights", "--device", "cpu")
    assert code == 0
    assert "Indexed 40 passages" in out and "hybrid index: dense + sparse + colbert" in out
    assert out.count("Query: ") == 1 and "(dense " in out and "colbert " in out
    assert "--tiny" in err


def test_unreachable_hub_falls_back_fast_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    start = time.perf_counter()
    model, notice = model_or_fallback("BAAI/bge-small-en-v1.5")
    assert time.perf_counter() - start < 5
    assert model == FALLBACK_MODEL
    assert "cannot be reached" in notice and "mean pooling" in notice
    with pytest.raises(ModelNotFoundError):
        model_or_fallback("./no/such/model")


def test_console_script_runs_the_demo_offline(offline_env: dict[str, str]) -> None:
    """The README's main command: the packaged MiniLM answers the three demo questions."""
    result = subprocess.run([*console_script(), "demo"], env=offline_env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    notes = [line for line in result.stderr.splitlines() if FALLBACK_MODEL in line]
    assert len(notes) == 1 and "BAAI/bge-small-en-v1.5 is not cached" in notes[0]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Indexed 40 passages with {FALLBACK_MODEL} (dense index, mean")
    tops = [lines[i + 1].split()[2] for i, line in enumerate(lines) if line.startswith("Query: ")]
    assert tops == ["hybrid-01", "instructions-01", "bge-03"]

