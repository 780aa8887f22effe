"""docs/reliability.md is generated from the reliability tests and must match them."""

from __future__ import annotations

import re

from reliability_report import DOC, Collector, Row, described_tests, merge, render, summary


def documented_tests() -> dict[str, str]:
    """``area::test function`` -> "What was tried", read from the table in docs/reliability.md."""
    out = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 6 or not cells[1].startswith("`"):
            continue
        out[f"{cells[0]}::{cells[1].split('`')[1]}"] = cells[2].replace("\\|", "|")
    return out


def test_reliability_doc_lists_the_current_tests() -> None:
    """Every reliability test appears in docs/reliability.md with its current description."""
    assert DOC.exists(), "docs/reliability.md is missing: run python -m tests.reliability_report"
    assert documented_tests() == described_tests(), (
        "docs/reliability.md is out of date: run python -m tests.reliability_report")


def test_rows_record_outcomes_and_observations() -> None:
    """The collector turns passed, failed and expected-failure reports into rows, and the
    rows of one test's parameter sets merge into one."""

    class Report:
        def __init__(self, nodeid: str, outcome: str, when: str = "call", **extra: object) -> None:
            self.nodeid, self.outcome, self.when = nodeid, outcome, when
            self.passed = outcome == "passed"
            self.user_properties = [("iterations", 3), ("held", "a | b")]
            self.__dict__.update(extra)

    collector = Collector()
    collector.pytest_runtest_logreport(Report("tests/test_reliability_crash.py::test_a", "passed"))
    collector.pytest_runtest_logreport(Report("tests/test_reliability_crash.py::test_b[x]",
                                              "failed"))
    collector.pytest_runtest_logreport(Report("tests/test_reliability_limits.py::test_c",
                                              "skipped", wasxfail="bug 1"))
    collector.pytest_runtest_logreport(Report("tests/test_reliability_crash.py::test_b[y]",
                                              "passed"))
    rows = list(collector.rows.values())
    assert [(r.area, r.test, r.outcome) for r in rows] == [
        ("crash", "test_a", "held"), ("crash", "test_b[x]", "**FAILED**"),
        ("limits", "test_c", "did not hold (known bug: bug 1)"), ("crash", "test_b[y]", "held")]
    assert [(r.test, r.iterations, r.outcome) for r in merge(rows)] == [
        ("`test_a`", "3", "held"), ("`test_b` [x, y]", "6", "held for 1/2; [x] **FAILED**"),
        ("`test_c`", "3", "did not hold (known bug: bug 1)")]
    table = render([Row("crash", "test_a", "tried | this", "3", "a | b", "held")])
    assert "| crash | `test_a` | tried \\| this | 3 | a \\| b | held |" in table
    assert summary("First line\n  goes on.\n\nDetails.") == "First line goes on."
