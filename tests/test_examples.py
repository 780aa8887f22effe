"""Every ``examples/*.py`` runs as a user runs it (``__main__``, its offline flag) and prints.

All examples run in ONE subprocess that executes each file with ``runpy`` as ``__main__``,
with its own ``sys.argv`` and captured output, and records its exit status: the examples are
isolated from pytest's process while torch and transformers are imported once (a process per
example costs about 5 s of imports each). Each example then gets its own test asserting exit
status 0 and its key output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
#: the flags that make an example run without the model hub, in order of preference (a real
#: packaged model first); every example takes ``--tiny``, as the README says
OFFLINE_FLAGS = ("--offline", "--tiny")
#: lines an example must print when run offline (every example must also exit 0 and print)
KEY_OUTPUT = {
    "quickstart.py": [
        "model: sentence-transformers/all-MiniLM-L6-v2 (mean pooling, 384-d)",
        "best: The giant panda is a bear species",
        "best: BGE is a family of text embedding models",
    ],
    "m3_hybrid_search.py": [
        "indexed 6 documents", "hybrid (0.4 dense + 0.2 sparse + 0.4 colbert):",
        "filter lang=de:", "compute_score: {'dense':", "same ranking: True",
    ],
    "icl_bge_en_icl.py": [
        "family: icl, pooling: last_token",
        "query body: '<instruct>Given a web search query", "scores with examples:",
    ],
}


def offline_flag(path: Path) -> str | None:
    """The offline flag an example's argument parser declares, if any."""
    source = path.read_text(encoding="utf-8")
    return next((flag for flag in OFFLINE_FLAGS if f'"{flag}"' in source), None)


#: runs the examples given as JSON [[path, flag], ...]; prints {path: {returncode, stdout, stderr}}
_DRIVER = r"""
import contextlib, io, json, runpy, sys, traceback

results = {}
for path, flag in json.loads(sys.argv[1]):
    sys.argv = [path, *([flag] if flag else [])]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
    results[path] = {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
json.dump(results, sys.__stdout__)
"""


@pytest.fixture(scope="session")
def example_runs(offline_env: dict[str, str]) -> dict[str, dict[str, object]]:
    jobs = [[str(path), offline_flag(path)] for path in EXAMPLES]
    result = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(jobs)], env=offline_env,
                            capture_output=True, text=True, timeout=600, check=False,
                            cwd=EXAMPLES_DIR.parent)
    assert result.returncode == 0, f"the example driver failed:\n{result.stderr[-3000:]}"
    return {Path(path).name: run for path, run in json.loads(result.stdout).items()}


def test_every_example_takes_tiny() -> None:
    assert EXAMPLES, "examples/ is empty"
    missing = [p.name for p in EXAMPLES if '"--tiny"' not in p.read_text(encoding="utf-8")]
    assert not missing, f"examples without --tiny: {missing}"


def test_quickstart_runs_with_a_tiny_model(offline_env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, str(EXAMPLES_DIR / "quickstart.py"), "--tiny"],
                            env=offline_env, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model: " in result.stdout and "(cls pooling, 32-d)" in result.stdout
    assert result.stdout.count("best: ") == 2


def test_key_output_names_existing_examples() -> None:
    assert set(KEY_OUTPUT) <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_offline(path: Path, example_runs: dict[str, dict[str, object]]) -> None:
    run = example_runs[path.name]
    assert run["returncode"] == 0, f"{path.name} failed:\n{str(run['stderr'])[-3000:]}"
    stdout = str(run["stdout"])
    assert stdout.strip(), f"{path.name} printed nothing"
    for line in KEY_OUTPUT.get(path.name, []):
        assert line in stdout, f"{path.name}: {line!r} not in output:\n{stdout}"
