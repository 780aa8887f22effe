"""Helpers shared by test files (import them with ``from helpers import ...``; test files never
import each other). Session fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

#: the texts the adapter helpers embed
SAMPLE_TEXTS = ["hybrid search with sparse lexical weights", "the giant panda eats bamboo"]


def assert_close(actual: Any, expected: Any, *, rtol: float = 1e-5) -> None:
    """``actual`` equals ``expected`` within ``rtol`` of the compared magnitude.

    The absolute slack is ``rtol`` times the largest magnitude in ``expected`` (at least 1), so
    near-zero entries of a vector do not demand bit-exact float32 kernels (AVX2, AVX-512 and
    AMX CPUs round differently), while every entry is held to the vector's own scale.
    """
    want = np.asarray(expected, dtype=np.float64)
    got = np.asarray(actual, dtype=np.float64)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def assert_sparse_dicts_close(actual: Sequence[dict], expected: Sequence[dict], *,
                              rtol: float = 1e-5) -> None:
    """Sparse vectors (token id -> weight) hold the same tokens and weights within ``rtol``."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert sorted(got) == sorted(want)
        keys = sorted(want)
        assert_close([got[k] for k in keys], [want[k] for k in keys], rtol=rtol)


def adapter_outputs(obj: Any, texts: Sequence[str] = SAMPLE_TEXTS) -> dict[str, Any]:
    """What ``obj`` (a core embedder or any embedding adapter) computes for ``texts``, as plain
    lists: the query and the document side. Used in the test process and in worker processes.
    """
    from bge_integrations import BGEEmbedder, BGEM3Embedder

    texts = list(texts)
    if isinstance(obj, BGEM3Embedder):
        out = obj.encode_documents(texts, sparse=True)
        return {"dense": out.dense.tolist(), "sparse": out.sparse}
    if isinstance(obj, BGEEmbedder):
        return {"query": obj.encode_queries(texts).tolist(),
                "document": obj.encode_documents(texts).tolist()}
    if hasattr(obj, "get_query_embedding"):  # LlamaIndex dense or sparse
        return {"query": [obj.get_query_embedding(t) for t in texts],
                "document": obj.get_text_embedding_batch(texts)}
    documents = obj.embed_documents(texts)  # LangChain dense or sparse
    queries = [obj.embed_query(t) for t in texts]
    if hasattr(queries[0], "indices"):  # SparseVector
        documents = [dict(zip(v.indices, v.values, strict=True)) for v in documents]
        queries = [dict(zip(v.indices, v.values, strict=True)) for v in queries]
    return {"query": queries, "document": documents}


def assert_outputs_close(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Two :func:`adapter_outputs` results agree (dense within ``rtol``, sparse key by key)."""
    assert actual.keys() == expected.keys()
    for key, want in expected.items():
        if want and isinstance(want[0], dict):
            assert_sparse_dicts_close(actual[key], want)
        else:
            assert_close(actual[key], want)


def run_cli(args: Sequence[str], env: dict[str, str], *, stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m bge_integrations.cli ARGS`` in a subprocess; captures text output."""
    return subprocess.run([sys.executable, "-m", "bge_integrations.cli", *args],
                          capture_output=True, text=True, env=env, input=stdin,
                          timeout=timeout, check=False)
