"""The documentation works: its Python blocks run, models.md is generated, mkdocs builds.

Every ```python block of README.md and docs/*.md is executed, the blocks of one file in order
in one namespace, offline. Hub ids in the docs (``BAAI/bge-m3``, ...) are served from a
stand-in Hugging Face cache whose snapshots are the session's tiny random models of the same
family, so the docs show the code users write and the test still runs every line of it. A
block directly preceded by ``<!-- skip-test -->`` is not run (only for code that needs
packages or downloads the project cannot provide).
"""

from __future__ import annotations

import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from bge_integrations.cli import main
from bge_integrations.cli.model_table import MARKDOWN_COMMAND
from bge_integrations.core import registry
from bge_integrations.core.registry import Family, list_models
from bge_integrations.core.resolve import PACKAGED_MODELS

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [p for p in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))) if p.exists()]
SKIP_MARKER = "<!-- skip-test -->"
_FENCE = re.compile(r"^```(\S*)\s*$")
_COMMIT = "0" * 40


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """``(first line number, code, skipped)`` of every ```python block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match or not match.group(1):
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        if match.group(1) == "python":
            before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            blocks.append((i + 2, "\n".join(lines[i + 1:end]), before == SKIP_MARKER))
        i = end + 1
    return blocks


@pytest.fixture(scope="session")
def stand_in_hub_cache(tmp_path_factory: pytest.TempPathFactory, tiny_bert: str, tiny_m3: str,
                       tiny_icl: str, request: pytest.FixtureRequest) -> Path:
    """A Hugging Face cache holding every registered hub id (but the packaged MiniLM)."""
    cache = tmp_path_factory.mktemp("hf-hub-cache")
    stand_in = {Family.ENCODER: tiny_bert, Family.M3: tiny_m3, Family.ICL: tiny_icl,
                Family.DECODER: tiny_icl}
    for spec in list_models():
        if spec.name.lower() in PACKAGED_MODELS:
            continue
        repo = cache / ("models--" + spec.name.replace("/", "--"))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(_COMMIT)
        (repo / "snapshots").mkdir()
        (repo / "snapshots" / _COMMIT).symlink_to(stand_in[spec.family], target_is_directory=True)
    _stand_in_rerankers(cache, request)
    return cache


def _stand_in_rerankers(cache: Path, request: pytest.FixtureRequest) -> None:
    """Registered rerankers (those without remote code) served by tiny ones of their kind."""
    from bge_integrations.core.rerank_registry import list_rerankers

    fixtures = {"encoder": "tiny_reranker", "llm": "tiny_llm_reranker",
                "layerwise": "tiny_layerwise_reranker",
                "lightweight": "tiny_lightweight_reranker"}
    for spec in list_rerankers():
        if spec.trust_remote_code:
            continue
        repo = cache / ("models--" + spec.name.replace("/", "--"))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(_COMMIT)
        (repo / "snapshots").mkdir()
        (repo / "snapshots" / _COMMIT).symlink_to(
            request.getfixturevalue(fixtures[spec.kind.value]), target_is_directory=True)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           stand_in_hub_cache: Path, tiny_cache: Path) -> None:
    blocks = [(line, code) for line, code, skip in python_blocks(path.read_text()) if not skip]
    if not blocks:
        pytest.skip(f"{path.name} has no Python block to run")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(stand_in_hub_cache))
    monkeypatch.setenv("BGE_INTEGRATIONS_CACHE", str(tiny_cache))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # docs may register
    from bge_integrations.core import rerank_registry

    monkeypatch.setattr(rerank_registry, "_REGISTRY", dict(rerank_registry._REGISTRY))
    try:  # docs may set the global LlamaIndex Settings: put them back after the test
        from llama_index.core import Settings as llama_settings
    except ImportError:
        pass
    else:
        for name, value in vars(llama_settings).items():
            monkeypatch.setattr(llama_settings, name, value)
    monkeypatch.chdir(tmp_path)  # docs may write files
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for line, code in blocks:
        try:
            exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)  # noqa: S102
        except Exception:  # noqa: BLE001 - report the block and its traceback
            pytest.fail(f"{path.name}: the block at line {line} failed:\n{traceback.format_exc()}")


def test_skip_markers_precede_python_blocks() -> None:
    for path in DOC_FILES:
        text = path.read_text()
        skipped = sum(skipped for _, _, skipped in python_blocks(text))
        assert text.count(SKIP_MARKER) == skipped, f"{path.name}: a {SKIP_MARKER} marks no block"


def test_models_md_is_generated_from_the_registry(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/models.md is exactly what `bge-integrations models --markdown` prints."""
    builtin = {spec.name.lower(): spec for spec in registry._BUILTIN}
    monkeypatch.setattr(registry, "_REGISTRY", builtin)  # as in a fresh process
    assert main(["models", "--markdown"]) == 0
    expected = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    assert capsys.readouterr().out == expected, (
        f"docs/models.md is stale; regenerate it with `{MARKDOWN_COMMAND}`")
    for spec in builtin.values():
        assert f"| `{spec.name}` | {spec.family.value} | {spec.pooling.value} |" in expected


def test_api_reference_names_every_public_name() -> None:
    import bge_integrations.langchain
    import bge_integrations.llama_index
    import bge_integrations.retrieval

    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    modules = (bge_integrations, bge_integrations.retrieval, bge_integrations.langchain,
               bge_integrations.llama_index)
    missing = [f"{m.__name__}.{name}" for m in modules for name in m.__all__
               if not name.startswith("__") and f"`{name}" not in api]
    assert not missing, f"docs/api.md does not mention {missing}"


def test_mkdocs_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                             str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "m3-hybrid" / "index.html").is_file()
