"""Write docs/reliability.md from the reliability tests: what was tried, how often, what held.

Every test in ``tests/test_reliability_*.py`` says what it tries in the first paragraph of its
docstring and reports what it observed through pytest's ``record_property``::

    record_property("iterations", 250)
    record_property("held", "load == the last completed save after 250/250 kills")

Regenerate the table (runs those tests, about a minute)::

    python -m tests.reliability_report

``tests/test_reliability_report.py`` fails when a reliability test was added, removed or
re-described and the table was not regenerated.
"""

from __future__ import annotations

import ast
import platform
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

__all__ = ["DOC", "TEST_FILES", "Collector", "Row", "described_tests", "main", "merge", "render"]

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
#: the reliability test files, in the order of the table
TEST_FILES = [ROOT / "tests" / f"test_reliability_{area}.py"
              for area in ("concurrency", "crash", "integrity", "security", "limits")]
_OUTCOMES = {"passed": "held", "failed": "**FAILED**", "skipped": "skipped"}


@dataclass
class Row:
    """One line of the table: one test (one parameter set) and what its run showed."""

    area: str
    test: str
    tried: str
    iterations: str
    held: str
    outcome: str


def summary(doc: str | None) -> str:
    """The first paragraph of a docstring on one line."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def described_tests() -> dict[str, str]:
    """``area::test function`` -> docstring summary, read from the test files' source."""
    out = {}
    for path in TEST_FILES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                out[f"{_area(path.name)}::{node.name}"] = summary(ast.get_docstring(node))
    return out


def _area(file_name: str) -> str:
    return file_name.removeprefix("test_reliability_").removesuffix(".py")


class Collector:
    """A pytest plugin that turns each test's report and recorded properties into a Row."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self._docs: dict[str, str] = {}

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        self._docs[item.nodeid] = summary(getattr(getattr(item, "function", None), "__doc__", ""))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.passed and report.when != "call":
            return
        if report.when == "teardown" and report.nodeid in self.rows:
            self.rows[report.nodeid].outcome = _OUTCOMES["failed"]
            return
        props: dict[str, Any] = dict(report.user_properties)
        if hasattr(report, "wasxfail"):
            outcome = f"did not hold (known bug: {report.wasxfail})"
        else:
            outcome = _OUTCOMES.get(report.outcome, report.outcome)
        file_name, _, test = report.nodeid.partition("::")
        self.rows[report.nodeid] = Row(
            area=_area(Path(file_name).name), test=test, tried=self._docs.get(report.nodeid, ""),
            iterations=str(props.get("iterations", 1)), held=str(props.get("held", "")),
            outcome=outcome)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def merge(rows: list[Row]) -> list[Row]:
    """One row per test function: its parameter sets are listed, counted and summed."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.area, row.test.split("[")[0]), []).append(row)
    merged = []
    for (area, test), group in groups.items():
        params = [r.test[len(test) + 1:-1] for r in group if r.test != test]
        held = [r for r in group if r.outcome == "held"]
        if len(held) == len(group):
            outcome = "held" if len(group) == 1 else f"held ({len(group)}/{len(group)})"
        else:
            failed = "; ".join(f"{r.test[len(test):]} {r.outcome}".strip()
                               for r in group if r.outcome != "held")
            outcome = f"held for {len(held)}/{len(group)}; {failed}" if held else failed
        merged.append(Row(
            area=area, test=f"`{test}`" + (f" [{', '.join(params)}]" if params else ""),
            tried=group[0].tried,
            iterations=str(sum(int(r.iterations) for r in group)),
            held="; ".join(dict.fromkeys(r.held for r in group if r.held)),
            outcome=outcome))
    return merged


def render(rows: list[Row]) -> str:
    """The markdown page for ``rows`` (one per test function)."""
    import torch

    merged = merge(rows)
    held = sum(r.outcome.startswith("held (") or r.outcome == "held" for r in merged)
    lines = [
        "# Reliability and security: what was tried and what held",
        "",
        ("Generated by `python -m tests.reliability_report` from `tests/test_reliability_*.py`;"
         " do not edit by hand."),
        "Each row is one test function (with its parameter sets): its docstring says what was",
        "tried; the test records how many iterations it ran and what it observed. Known bugs",
        "are strict expected failures: their row says what did not hold and why.",
        "`tests/test_reliability_report.py` fails when a test was added, removed or",
        "re-described without regenerating this page.",
        "",
        "Regenerate (runs the reliability tests, about a minute):",
        "",
        "    python -m tests.reliability_report",
        "",
        (f"Last run: {date.today().isoformat()}, Python {platform.python_version()}, "
         f"torch {torch.__version__}, {platform.system()} {platform.machine()}. "
         f"{held} of {len(merged)} tests held entirely ({len(rows)} cases)."),
        "",
        "| Area | Test | What was tried | Iterations | What held | Outcome |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r.area} | {_cell(r.test)} | {_cell(r.tried)} | {r.iterations} | "
              f"{_cell(r.held)} | {_cell(r.outcome)} |" for r in merged]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the reliability tests and rewrite docs/reliability.md; return pytest's exit code."""
    collector = Collector()
    args = [*(str(p) for p in TEST_FILES), "-q", "-p", "no:cacheprovider", *(argv or [])]
    code = pytest.main(args, plugins=[collector])
    if not collector.rows:
        print("no reliability test ran; docs/reliability.md was left unchanged", file=sys.stderr)
        return int(code) or 1
    DOC.write_text(render(list(collector.rows.values())), encoding="utf-8")
    print(f"wrote {DOC} ({len(collector.rows)} rows)")
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
