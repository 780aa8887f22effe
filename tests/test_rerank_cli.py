"""``bge-integrations rerank QUERY FILE``: ranked JSON lines, -k, jsonl ids, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bge_integrations import BGEReranker
from bge_integrations.cli import main

TEXTS = ["The giant panda is a bear.", "Paris is in France.", "Python is a language."]


def test_rerank_prints_ranked_json_lines(tmp_path: Path, tiny_reranker: str,
                                         reranker: BGEReranker,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t, "lang": "en"}) + "\n"
                           for i, t in enumerate(TEXTS)))
    assert main(["rerank", "what is a panda?", str(src), "-k", "2", "--model", tiny_reranker,
                 "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = reranker.rerank("what is a panda?", TEXTS, top_n=2)
    assert [(r["rank"], r["index"], r["id"]) for r in rows] == [
        (1, want[0][0], f"d{want[0][0]}"), (2, want[1][0], f"d{want[1][0]}")]
    assert [r["score"] for r in rows] == pytest.approx([s for _, s in want], abs=1e-6)
    assert rows[0]["metadata"] == {"lang": "en"}


def test_rerank_text_file_normalized(tmp_path: Path, tiny_reranker: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "docs.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    assert main(["rerank", "q", str(src), "--model", tiny_reranker, "--device", "cpu",
                 "--normalize"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and all(0 < r["score"] < 1 for r in rows)


def test_rerank_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "docs.txt"
    src.write_text("a\n")
    assert main(["rerank", "q", str(src), "--model", str(tmp_path)]) == 1
    assert "--kind" in capsys.readouterr().err
    assert main(["rerank", "q", str(tmp_path / "missing.txt")]) == 1
