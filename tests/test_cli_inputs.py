"""The command line on real-world and hostile input: BOM and typed CSV, ids, output paths, the
hub probe, the offline hint, ``--version``; every failure of every subcommand is one line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

import bge_integrations
from bge_integrations.cli import app, main
from bge_integrations.cli.textio import read_records

PROG = "bge-integrations"
TEXTS = ["BGE models embed text.", "Pandas eat bamboo.", "Paris is in France."]


@pytest.fixture(autouse=True)
def _tiny_models_from_the_session(monkeypatch: pytest.MonkeyPatch, tiny_cache: Path) -> None:
    monkeypatch.setenv("BGE_INTEGRATIONS_CACHE", str(tiny_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(result: tuple[int, str, str], fragment: str = "") -> str:
    code, out, err = result
    lines = err.strip().splitlines()
    assert code == 1 and out == "", (code, out, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: "), err[-2000:]
    assert "Traceback" not in err and "Errno" not in err
    assert fragment in lines[0], lines[0]
    return lines[0]


def write(path: Path, content: str | bytes) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


# -- input files ----------------------------------------------------------------------------------
def test_csv_with_a_byte_order_mark_keeps_its_id_column(tmp_path: Path) -> None:
    source = write(tmp_path / "bom.csv", "\ufeffid,text,year\na1,hello,2019\n".encode())
    (record,) = read_records(source)
    assert record.id == "a1" and record.metadata == {"year": 2019}
    jsonl = write(tmp_path / "bom.jsonl", '\ufeff{"id": "j1", "text": "hi"}\n'.encode())
    assert read_records(jsonl)[0].id == "j1"


def test_csv_metadata_is_typed_as_jsonl_would_be(tmp_path: Path) -> None:
    source = write(tmp_path / "typed.csv",
                   "text,year,score,flag,code,big,huge,word,empty,neg\n"
                   "hi,2019,0.5,TRUE,007,99999999999999999999,1e999,NaN,,-3\n")
    (record,) = read_records(source)
    assert record.metadata == {"year": 2019, "score": 0.5, "flag": True, "code": "007",
                               "big": "99999999999999999999", "huge": "1e999", "word": "NaN",
                               "empty": "", "neg": -3}
    assert type(record.metadata["year"]) is int


def test_csv_filter_on_a_number_finds_the_rows(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    source = write(tmp_path / "docs.csv", "id,text,year\n" + "".join(
        f"d{i},{text},{2019 + i}\n" for i, text in enumerate(TEXTS)))
    index_dir = str(tmp_path / "idx")
    assert run(capsys, "index", "build", source, "--out", index_dir, "--tiny",
               "--device", "cpu")[0] == 0
    code, out, _ = run(capsys, "index", "query", index_dir, "bamboo", "--filter", "year=2020",
                       "--json")
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["d1"]
    code, out, _ = run(capsys, "index", "query", index_dir, "bamboo", "--json",
                       "--filter", '{"year": {"$gte": 2020}}')
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == ["d1", "d2"]


def test_text_without_id_colliding_with_an_explicit_id_names_both_lines(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = write(tmp_path / "ids.jsonl",
                   '{"text": "no id"}\n\n{"id": "0", "text": "explicit zero"}\n')
    for argv in (["index", "build", source, "--out", str(tmp_path / "idx"), "--tiny"],
                 ["embed", source, "-o", str(tmp_path / "out.jsonl"), "--tiny"]):
        line = assert_one_error_line(run(capsys, *argv), "ids.jsonl:1: this text has no id")
        assert "'0' is the id of the text at line 3" in line
    assert not (tmp_path / "idx").exists() and not (tmp_path / "out.jsonl").exists()
    repeated = write(tmp_path / "rep.csv", "id,text\na,x\nb,y\na,z\n")
    assert_one_error_line(run(capsys, "embed", repeated, "-o", str(tmp_path / "o.npy")),
                          "rep.csv:4: id 'a' appears more than once (first at line 2)")


def test_index_build_onto_an_existing_file_is_one_clear_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = write(tmp_path / "t.txt", "\n".join(TEXTS))
    taken = write(tmp_path / "taken", "my notes")
    assert_one_error_line(run(capsys, "index", "build", source, "--out", taken, "--tiny"),
                          "exists and is not a directory")
    assert Path(taken).read_text() == "my notes"
    assert_one_error_line(
        run(capsys, "index", "build", source, "--out", str(tmp_path / "no" / "idx"), "--tiny"),
        "does not exist")


# -- the hub -----------------------------------------------------------------------------------
def test_query_of_an_index_built_from_a_local_model_does_not_probe_the_hub(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        tiny_bert: str, tiny_m3: str) -> None:
    source = write(tmp_path / "t.txt", "\n".join(TEXTS))
    probes: list[bool] = []
    monkeypatch.setattr(app, "go_offline_if_unreachable", lambda: probes.append(True))
    for model in (tiny_bert, tiny_m3):
        index_dir = str(tmp_path / Path(model).name)
        assert run(capsys, "index", "build", source, "--out", index_dir, "--model", model,
                   "--device", "cpu")[0] == 0
        code, out, err = run(capsys, "index", "query", index_dir, "bamboo", "-k", "1")
        assert code == 0 and out, err
        assert probes == [], f"the hub was probed for an index of {model}"
    code, _, err = run(capsys, "index", "query", index_dir, "bamboo", "--model", "acme/m3")
    assert code == 1 and probes == [True]  # a hub id is probed first


def test_offline_model_not_found_points_to_tiny_and_the_packaged_model(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    source = write(tmp_path / "t.txt", "\n".join(TEXTS))
    for argv in (["embed", source, "-o", str(tmp_path / "o.npy")],
                 ["index", "build", source, "--out", str(tmp_path / "idx")]):
        line = assert_one_error_line(run(capsys, *argv, "--model", "BAAI/bge-base-en-v1.5"),
                                     "Could not find model 'BAAI/bge-base-en-v1.5'")
        assert "--tiny" in line and "--model sentence-transformers/all-MiniLM-L6-v2" in line


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"{PROG} {bge_integrations.__version__}"


# -- hostile input: every failure is one line, exit status 1 --------------------------------------
DEEP = 100_000  # far past Python's recursion limit


def _hostile_cases(tmp: Path, index_dir: str) -> list[tuple[str, list[str]]]:
    """(name, argv) for every subcommand that takes input; each must fail in one line."""
    deep_json = "[" * DEEP + "]" * DEEP
    files = {
        "deep.jsonl": '{"text": "ok"}\n{"text": "x", "meta": ' + deep_json + "}\n",
        "deep-string.jsonl": deep_json + "\n",
        "bom-only.txt": "\ufeff".encode(),
        "binary.txt": bytes(range(256)) * 4,
        "surrogate.jsonl": b'{"text": "\xed\xa0\x80"}\n',
        "huge-field.csv": "id,text\n1," + "x" * 200_000 + "\n",
        "null-id.jsonl": '{"id": [1], "text": "x"}\n',
        "empty-text.jsonl": '{"text": "   "}\n',
        "header-only.csv": "id,text\n",
    }
    for name, content in files.items():
        write(tmp / name, content)
    model_dirs = {"empty-model": {}, "bad-config": {"config.json": "{"},
                  "list-config": {"config.json": "[1, 2]"}}
    for name, content in model_dirs.items():
        (tmp / name).mkdir()
        for file, text in content.items():
            write(tmp / name / file, text)
    bad_indexes = {"garbage-manifest": {"manifest.json": "\x00\x01 not json"},
                   "list-manifest": {"manifest.json": "[1, 2, 3]"},
                   "deep-manifest": {"manifest.json": deep_json},
                   "bad-model-json": {"manifest.json": '{"model": {}}', "model.json": "{"},
                   "odd-model-json": {"manifest.json": '{"kind": "hybrid"}',
                                      "model.json": '{"model": [1]}'}}
    for name, content in bad_indexes.items():
        (tmp / name).mkdir()
        for file, text in content.items():
            write(tmp / name / file, text)
    out = str(tmp / "out.npy")
    cases = [(f"embed {name}", ["embed", str(tmp / name), "-o", out, "--tiny"])
             for name in files]
    cases += [(f"index build {name}", ["index", "build", str(tmp / name), "--out",
                                       str(tmp / f"idx-{name}"), "--tiny"])
              for name in ("deep.jsonl", "binary.txt", "huge-field.csv")]
    cases += [(f"embed --model {name}", ["embed", str(tmp / "t.txt"), "-o", out,
                                         "--model", str(tmp / name)]) for name in model_dirs]
    cases += [(f"demo --model {name}", ["demo", "--model", str(tmp / name)])
              for name in model_dirs]
    cases += [
        ("embed -o directory", ["embed", str(tmp / "t.txt"), "-o", str(tmp / "dir.npy"),
                                "--tiny"]),
        ("embed --device bogus", ["embed", str(tmp / "t.txt"), "-o", out, "--tiny",
                                  "--device", "bogus"]),
        ("index build --out file", ["index", "build", str(tmp / "t.txt"), "--out",
                                    str(tmp / "t.txt"), "--tiny"]),
        ("demo --device bogus", ["demo", "--tiny", "--device", "bogus"]),
    ]
    filters = {"deep JSON": "{" + '"a": {' * DEEP + "}" * DEEP + "}",
               "deep value": "a=" + deep_json,
               "nested 600": '{"a": ' + '{"$and": [' * 600 + '{"b": 1}' + "]}" * 600 + "}",
               "no key": "=3", "bad JSON": "{nope", "bytes-like $in": '{"a": {"$in": "xy"}}',
               "unknown operator": '{"a": {"$regex": "x"}}', "huge": "k=" + "9" * 5000}
    cases += [(f"index query --filter {name}", ["index", "query", index_dir, "q",
                                                "--filter", value])
              for name, value in filters.items()]
    cases += [(f"index query {name}", ["index", "query", str(tmp / name), "q"])
              for name in bad_indexes]
    cases += [("index query on a file", ["index", "query", str(tmp / "t.txt"), "q"]),
              ("index query --model empty", ["index", "query", index_dir, "q", "--model",
                                             str(tmp / "empty-model")])]
    return cases


def test_hostile_inputs_are_one_error_line_exit_1(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    write(tmp_path / "t.txt", "\n".join(TEXTS))
    (tmp_path / "dir.npy").mkdir()
    index_dir = str(tmp_path / "good-index")
    assert run(capsys, "index", "build", str(tmp_path / "t.txt"), "--out", index_dir,
               "--tiny", "--device", "cpu")[0] == 0
    limit = sys.getrecursionlimit()
    failures = []
    for name, argv in _hostile_cases(tmp_path, index_dir):
        code, out, err = run(capsys, *argv)
        lines = err.strip().splitlines()
        errors = [line for line in lines if line.startswith(f"{PROG}: error: ")]
        if code != 1 or out or len(errors) != 1 or "Traceback" in err or "[Errno" in err or \
                len([line for line in lines if not line.startswith(f"{PROG}: note: ")]) != 1:
            failures.append(f"{name}: exit {code}, stderr {err[-600:]!r}")
    assert sys.getrecursionlimit() == limit
    assert not failures, "\n".join(failures)


def test_damaged_model_json_of_a_hybrid_index_is_one_line_or_ignored(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The CLI's model.json beside a saved HybridIndex (older layouts): damaged, it may be
    ignored (the index records its model) or reported, never a traceback."""
    source = write(tmp_path / "t.txt", "\n".join(TEXTS))
    built = tmp_path / "hybrid"
    assert run(capsys, "index", "build", source, "--out", str(built), "--tiny",
               "--model", "BAAI/bge-m3", "--device", "cpu")[0] == 0
    deep = "[" * DEEP + "]" * DEEP
    for n, content in enumerate(["{", "[1]", '{"model": [1]}', '{"model": 5}', deep, "\x00"]):
        copy = tmp_path / f"copy-{n}"
        shutil.copytree(built, copy)
        write(copy / "model.json", content)
        code, out, err = run(capsys, "index", "query", str(copy), "bamboo", "--device", "cpu")
        assert "Traceback" not in err
        if code != 0:
            assert_one_error_line((code, out, err))


def test_an_unexpected_error_is_one_line_unless_the_traceback_is_asked_for(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        msg = "a bug\nover two lines"
        raise RuntimeError(msg)

    monkeypatch.setattr(app, "_cmd_models", broken)  # the parser is built per call
    line = assert_one_error_line(run(capsys, "models"), "unexpected RuntimeError: a bug over")
    assert "BGE_INTEGRATIONS_TRACEBACK=1" in line
    monkeypatch.setenv("BGE_INTEGRATIONS_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="a bug"):
        main(["models"])
