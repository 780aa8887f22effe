"""Helpers shared by test files (import them with ``from helpers import ...``; test files never
import each other). Session fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import functools
import json
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bge_integrations import BGEM3Embedder, Hit
from bge_integrations.retrieval import persistence
from bge_integrations.retrieval.persistence import MANIFEST
from bge_integrations.tiny_models import TINY_CORPUS

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


def assert_sparse_close(actual: Sequence[dict], expected: Sequence[dict], *,
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
            assert_sparse_close(actual[key], want)
        else:
            assert_close(actual[key], want)


def run_cli(args: Sequence[str], env: dict[str, str], *, stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m bge_integrations.cli ARGS`` in a subprocess; captures text output."""
    return subprocess.run([sys.executable, "-m", "bge_integrations.cli", *args],
                          capture_output=True, text=True, env=env, input=stdin,
                          timeout=timeout, check=False)


# -- the index tests' shared corpus, brute-force references and checks -----------------------
MODES = ("dense", "sparse", "colbert", "hybrid")
SCORE_KEY = {"dense": "dense", "sparse": "sparse", "colbert": "colbert",
             "hybrid": "colbert+sparse+dense"}
QUERIES = ["what is a panda bear?", "capital of France", "BGE embedding model for retrieval",
           "sparse keyword matches"]
CORPUS = list(TINY_CORPUS)
IDS = [f"doc-{i}" for i in range(len(CORPUS))]
METADATAS = [{"i": i, "parity": "even" if i % 2 == 0 else "odd", "score": i / 4,
              "tags": ["a", "b"] if i % 3 == 0 else ["c"], "flag": i < 5,
              **({"extra": i} if i % 4 == 0 else {})} for i in range(len(CORPUS))]


@functools.cache
def _reference(m3: BGEM3Embedder, query: str, texts: tuple[str, ...],
               weights: tuple[float, float, float]) -> dict[str, np.ndarray]:
    scores = m3.compute_score([(query, t) for t in texts], weights=weights)
    return {k: np.asarray(v) for k, v in scores.items()}


def reference(m3: BGEM3Embedder, query: str, texts: list[str] = CORPUS,
              weights: tuple[float, float, float] = (0.4, 0.2, 0.4)) -> dict[str, np.ndarray]:
    """Brute force: compute_score of the query with every text (cached)."""
    return _reference(m3, query, tuple(texts), weights)


def assert_ranking(hits: list[Hit], ids: list[str], scores: np.ndarray, k: int,
                   *, positive_only: bool = False, tol: float = 1e-5) -> None:
    """The hits are the brute-force top k: same ids in the same order, same scores."""
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > 0 or not positive_only]
    want = order[:k]
    assert [h.id for h in hits] == [ids[i] for i in want]
    np.testing.assert_allclose([h.score for h in hits], scores[want], rtol=tol, atol=tol / 10)


def assert_same_hits(got: list[list[Hit]], want: list[list[Hit]], tol: float = 1e-5) -> None:
    """Same ids, texts, metadata in the same order; scores equal within ``tol``."""
    assert [[(h.id, h.text, h.metadata) for h in hits] for hits in got] == [
        [(h.id, h.text, h.metadata) for h in hits] for hits in want]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=tol,
                                   atol=tol / 10)
        for x, y in zip(a, b, strict=True):
            assert x.scores == pytest.approx(y.scores, rel=tol, abs=tol / 10)


def check_searches_see_whole_groups(idx: Any, corpus: list[str],
                                    search: Callable[[int], list[list[Hit]]]) -> None:
    """8 threads search (reader ``i`` calls ``search(i)``) while a writer adds and deletes
    groups of 3 documents on ``idx``, which holds ``corpus[:6]`` as group "base" first.

    Each group is added by one ``add`` and removed by one ``delete``, so every search must see
    each group whole or not at all; the base documents are always there.
    """
    idx.add(corpus[:6], metadatas=[{"group": "base"}] * 6)
    stop = threading.Event()
    errors: list[BaseException] = []
    searches = [0]

    def writer() -> None:
        try:
            for n in range(12):
                group = [f"g{n}-{j}" for j in range(3)]
                idx.add(corpus[6 + n % 6: 9 + n % 6], metadatas=[{"group": f"g{n}"}] * 3,
                        ids=group)
                if n % 2:
                    idx.delete([f"g{n - 1}-{j}" for j in range(3)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            stop.set()

    def reader(i: int) -> None:
        try:
            while not stop.is_set():
                for hits in search(i):
                    groups: dict[str, int] = {}
                    for hit in hits:
                        groups[hit.metadata["group"]] = groups.get(hit.metadata["group"], 0) + 1
                    assert groups.pop("base") == 6
                    assert all(count == 3 for count in groups.values()), groups
                searches[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert searches[0] >= 8
    assert len(idx) == 6 + 6 * 3  # 12 groups added, 6 deleted


#: (filter, the same condition written in Python)
FILTER_CASES: list[tuple[dict, Callable[[dict], bool]]] = [
    ({"parity": "even"}, lambda m: m["i"] % 2 == 0),
    ({"parity": {"$eq": "odd"}}, lambda m: m["i"] % 2 == 1),
    ({"parity": {"$ne": "odd"}}, lambda m: m["i"] % 2 == 0),
    ({"extra": {"$ne": 4}}, lambda m: m["i"] != 4),  # a missing field matches $ne
    ({"extra": {"$gt": 0}}, lambda m: m["i"] in (4, 8, 12)),  # and nothing else
    ({"i": {"$in": [1, 3, 5, 100]}}, lambda m: m["i"] in (1, 3, 5)),
    ({"i": {"$gt": 10}}, lambda m: m["i"] > 10),
    ({"i": {"$gte": 10}}, lambda m: m["i"] >= 10),
    ({"i": {"$lt": 3}}, lambda m: m["i"] < 3),
    ({"i": {"$lte": 3}}, lambda m: m["i"] <= 3),
    ({"score": {"$gte": 1.5, "$lt": 2.5}}, lambda m: 1.5 <= m["i"] / 4 < 2.5),
    ({"score": 0.5}, lambda m: m["i"] == 2),
    ({"flag": True}, lambda m: m["i"] < 5),
    ({"flag": 1}, lambda m: False),  # equality is type-aware: 1 is not True
    ({"tags": "a"}, lambda m: m["i"] % 3 == 0),  # a list field matches when an element does
    ({"tags": {"$in": ["b", "c"]}}, lambda m: True),
    ({"$or": [{"i": {"$lt": 2}}, {"i": {"$gt": 12}}]}, lambda m: m["i"] in (0, 1, 13)),
    ({"$and": [{"parity": "even"}, {"i": {"$gte": 6}}]}, lambda m: m["i"] in (6, 8, 10, 12)),
    ({"parity": "even", "flag": False}, lambda m: m["i"] in (6, 8, 10, 12)),
    ({"$or": [{"$and": [{"parity": "odd"}, {"i": {"$lt": 5}}]}, {"extra": 12}]},
     lambda m: m["i"] in (1, 3, 12)),
]


# -- saved index files, edited as a buggy writer or an attacker would -------------------------
def generation(directory: Path) -> Path:
    return directory / json.loads((directory / MANIFEST).read_text())["generation"]


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - 3] ^= 0x10
    path.write_bytes(bytes(data))


def _edit_manifest(directory: Path, edit) -> None:  # noqa: ANN001 - a dict -> None function
    manifest = json.loads((directory / MANIFEST).read_text())
    edit(manifest)
    (directory / MANIFEST).write_text(json.dumps(manifest))


def _rewrite(directory: Path, name: str, write) -> None:  # noqa: ANN001 - a Path -> None function
    """Replace one data file and record it in the manifest, as a buggy writer would."""
    path = generation(directory) / name
    write(path)
    _edit_manifest(directory, lambda m: m["files"].__setitem__(name, {
        "bytes": path.stat().st_size, "sha256": persistence._sha256(path)}))


def llm_pair_ids(tok, q: str, p: str, max_length: int,  # noqa: ANN001 - a tokenizer
                 prompt: str) -> tuple[list[int], int, int]:
    """FlagLLMReranker's input for one pair, recomputed: ``[bos, "A: " q] [sep, "B: " p]``
    (cut to ``max_length``), then ``sep`` and the prompt. Also returns the lengths of the
    query part (with the first ``sep``) and of ``sep + prompt``."""
    sep = tok("\n", add_special_tokens=False)["input_ids"]
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    q_ids = tok("A: " + q, add_special_tokens=False, truncation=True,
                max_length=max_length * 3 // 4)["input_ids"]
    p_ids = tok("B: " + p, add_special_tokens=False, truncation=True,
                max_length=max_length)["input_ids"]
    first, second = [tok.bos_token_id, *q_ids], [*sep, *p_ids]
    excess = len(first) + len(second) - (max_length + len(sep) + len(prompt_ids))
    if 0 < excess < len(second):
        second = second[:-excess]
    return [*first, *second, *sep, *prompt_ids], len(first) + len(sep), len(sep + prompt_ids)


def random_changes(index: Any, *, steps: int, seed: int, n_rows: int,
                   add: Callable[[Any, list[int], list[dict], list[str]], Any],
                   reload: Callable[[Any], Any]) -> Iterator[tuple[int, str, Any, dict]]:
    """Random upserts (1-4 of 12 ids), deletes (1-3 ids, counts checked) and reloads, 6:3:1.

    ``add(index, rows, metadatas, ids)`` upserts the texts ``rows`` (indices below ``n_rows``);
    ``reload(index)`` returns the index saved and loaded again. After every step yields
    ``(step, kind, index, model)``: ``model`` maps each live id to ``(row, metadata)``.
    """
    rng = random.Random(seed)
    model: dict[str, tuple[int, dict]] = {}
    for step in range(steps):
        kind = rng.choices(["upsert", "delete", "reload"], weights=[6, 3, 1])[0]
        if kind == "upsert":
            ids = rng.sample([f"id{i}" for i in range(12)], rng.randint(1, 4))
            rows = [rng.randrange(n_rows) for _ in ids]
            metas = [{"step": step, "row": r} for r in rows]
            add(index, rows, metas, ids)
            model.update({i: (r, m) for i, r, m in zip(ids, rows, metas, strict=True)})
        elif kind == "delete":
            ids = rng.sample([f"id{i}" for i in range(12)], rng.randint(1, 3))
            assert index.delete(ids) == sum(i in model for i in ids)
            for i in ids:
                model.pop(i, None)
        else:
            index = reload(index)
        yield step, kind, index, model
