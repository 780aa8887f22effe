"""Importing the package is light: torch, transformers and the frameworks load on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ["torch", "transformers", "llama_index.core", "langchain_core", "scipy"]


def _modules_after(code: str) -> dict:
    probe = (f"import json, sys\n{code}\n"
             f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["bge_integrations", "bge_integrations.langchain",
                                    "bge_integrations.llama_index"])
def test_importing_a_package_imports_nothing_heavy(module: str) -> None:
    assert _modules_after(f"import {module}") == dict.fromkeys(HEAVY, False)


def test_registry_and_errors_need_no_torch() -> None:
    loaded = _modules_after(
        "from bge_integrations import get_spec, list_models, ModelNotFoundError\n"
        "assert get_spec('BAAI/bge-m3').max_length == 8192 and len(list_models()) > 40")
    assert not loaded["torch"] and not loaded["transformers"]


def test_model_classes_load_on_first_use() -> None:
    import bge_integrations
    from bge_integrations.core.embedder import BGEEmbedder
    from bge_integrations.retrieval import HybridIndex

    assert bge_integrations.BGEEmbedder is BGEEmbedder
    assert bge_integrations.HybridIndex is HybridIndex
    assert {"BGEEmbedder", "BGEM3Embedder", "HybridIndex", "DenseIndex", "Hit",
            "clear_model_cache", "M3Output"} <= set(dir(bge_integrations))
    assert set(bge_integrations.__all__) <= set(dir(bge_integrations))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        bge_integrations.NoSuchThing  # noqa: B018
