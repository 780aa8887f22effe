"""Concurrency: one HybridIndex (and its embedder) under 8 threads and 100 asyncio calls.

Every worker writes only its own document groups, so the final state does not depend on the
interleaving and must equal the same operations run serially. Meanwhile every search checks
what any interleaving must show: unique ids, each group whole and in one version (adds,
upserts and deletes are atomic), and the worker's own groups exactly as it left them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import CORPUS, QUERIES

from bge_integrations import BGEM3Embedder, Hit, HybridIndex
from bge_integrations.retrieval import Record, doc_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is faster

#: k that returns every matching document
ALL = 10_000
MODES = ("dense", "sparse", "colbert", "hybrid")
GROUP_SIZE = 3
BASE = [f"base-{j}" for j in range(6)]
#: (op, group, version): "add" (a new version of an existing group is an upsert), "delete",
#: "search" (group = mode), "shared" (upsert the one id every worker writes)
Op = tuple[str, str, int]


def group_ids(group: str) -> list[str]:
    return [f"{group}-{j}" for j in range(GROUP_SIZE)]


def group_texts(group: str, version: int) -> list[str]:
    seed = sum(map(ord, group))
    return [f"{CORPUS[(seed + 5 * j + version) % len(CORPUS)]} ({group} doc {j} v{version})"
            for j in range(GROUP_SIZE)]


def worker_script(worker: str, groups: int) -> list[Op]:
    """Add ``groups`` groups, upsert every third, delete every other, search in between."""
    ops: list[Op] = []
    for g in range(groups):
        name = f"{worker}-g{g}"
        ops += [("add", name, 1), ("search", MODES[g % 4], 0)]
        if g % 3 == 2:
            ops += [("add", name, 2), ("shared", worker, g)]
        if g % 2 == 1:
            ops += [("delete", f"{worker}-g{g - 1}", 0), ("search", MODES[(g + 1) % 4], 0)]
    return ops


def check_hits(hits: list[Hit], *, complete: bool = True, own: str = "",
               expected: dict[str, int] | None = None) -> None:
    """What every search must see, whatever runs beside it.

    Args:
        hits: the hits of one search with ``k=ALL``.
        complete: the search returns every document (not ``sparse`` mode, which returns
            lexical matches only): every group is whole and the base documents are there.
        own: the calling worker's name.
        expected: that worker's live groups -> version, exactly as it left them.
    """
    ids = [h.id for h in hits]
    assert len(ids) == len(set(ids)), "a document was returned twice"
    versions: dict[str, set[int]] = {}
    counts: dict[str, int] = {}
    for hit in hits:
        group = hit.metadata["group"]
        versions.setdefault(group, set()).add(hit.metadata["version"])
        counts[group] = counts.get(group, 0) + 1
    for group, count in counts.items():
        size = {"base": len(BASE), "shared": 1}.get(group, GROUP_SIZE)
        assert count == size if complete else count <= size, f"{group}: {count} of {size}"
        assert len(versions[group]) == 1, f"{group} is a mix of versions {versions[group]}"
    if complete:
        assert counts.get("base") == len(BASE), "base documents missing"
    if expected is not None:
        mine = {g: min(v) for g, v in versions.items() if g.startswith(f"{own}-")}
        assert mine == expected, f"{own} wrote {expected}, a search saw {mine}"


def run_op(index: HybridIndex, op: Op, own: str, live: dict[str, int], *,
           narrow: bool = False) -> None:
    """Apply one scripted operation; ``live`` tracks the worker's groups -> version.

    ``narrow`` searches filter on the worker's own and the base documents (cheaper; the
    filter runs before top-k, so they still see every such document).
    """
    kind, group, version = op
    if kind == "add":
        index.add(group_texts(group, version), ids=group_ids(group),
                  metadatas=[{"group": group, "version": version, "worker": own}] * GROUP_SIZE)
        live[group] = version
    elif kind == "delete":
        assert index.delete(group_ids(group)) == GROUP_SIZE
        del live[group]
    elif kind == "shared":
        index.add([f"the shared document, written by {group} at step {version}"], ids=["shared"],
                  metadatas=[{"group": "shared", "version": version}])
    else:
        scope = {"worker": {"$in": [own, "base"]}} if narrow else None
        hits = index.search(QUERIES[len(live) % len(QUERIES)], k=ALL, mode=group, filter=scope)
        if group == "sparse":
            check_hits(hits, complete=False)
        else:
            check_hits(hits, own=own, expected=live)


def new_index(m3: BGEM3Embedder) -> HybridIndex:
    index = HybridIndex(m3, candidates=ALL)
    index.add(group_texts("base", 0) + group_texts("base", 1), ids=BASE,
              metadatas=[{"group": "base", "version": 0, "worker": "base"}] * len(BASE))
    return index


def state(index: HybridIndex, ids: list[str]) -> tuple[list[Record], list[dict[str, float]]]:
    """Every record, and id -> score of every query in every mode (``ALL`` hits)."""
    results = []
    for mode in MODES:
        for hits in index.search_many(QUERIES, k=ALL, mode=mode):
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            results.append({h.id: h.score for h in hits})
    dense = index.search(QUERIES[0], k=ALL, mode="dense")
    assert len(dense) == len(index), "live rows and len(index) disagree"
    return index.get(ids), results


def assert_same_state(got: HybridIndex, want: HybridIndex, ids: list[str]) -> None:
    got_records, got_results = state(got, ids)
    want_records, want_results = state(want, ids)
    assert got_records == want_records
    for a, b in zip(got_results, want_results, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[i] for i in b], list(b.values()), rtol=1e-5, atol=1e-6)


def all_ids(scripts: dict[str, list[Op]]) -> list[str]:
    groups = {group for ops in scripts.values() for kind, group, _ in ops if kind == "add"}
    return BASE + [i for g in sorted(groups) for i in group_ids(g)]


def replay_serially(m3: BGEM3Embedder, scripts: dict[str, list[Op]]) -> HybridIndex:
    """The writes of every script, one worker after the other (searches change nothing)."""
    index = new_index(m3)
    for worker, ops in scripts.items():
        live: dict[str, int] = {}
        for op in ops:
            if op[0] != "search":
                run_op(index, op, worker, live)
    return index


def count_compactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Compact after a handful of dead rows, and count the compactions that happen."""
    monkeypatch.setattr(doc_rows, "COMPACT_MIN_DEAD", 6)
    purged: list[int] = []
    original = HybridIndex._settled

    def spy(self: HybridIndex, state: Any) -> Any:
        settled = original(self, state)
        if len(settled.ids) < len(state.ids):
            purged.append(len(state.ids) - len(settled.ids))
        return settled

    monkeypatch.setattr(HybridIndex, "_settled", spy)
    return purged


def test_eight_threads_write_and_search_one_index(m3x: BGEM3Embedder,  # noqa: F811
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  record_property: Callable) -> None:
    """8 threads add, upsert, delete and search their own groups of one HybridIndex, all upsert one
    shared id, a 9th thread saves snapshots, and compaction runs after every few deletes.

    Checks: no exception; every search returns unique ids, each group whole and in one
    version, and the thread's own groups exactly as it left them; each saved snapshot loads
    with the same properties; exactly one shared document remains; records and the scores
    of every query in every mode equal the serial run within 1e-5.
    """
    purged = count_compactions(monkeypatch)
    scripts = {f"t{w}": worker_script(f"t{w}", groups=6) for w in range(8)}
    index = new_index(m3x)
    barrier = threading.Barrier(len(scripts) + 1)
    errors: list[BaseException] = []
    done = threading.Event()
    snapshots: list[Path] = []

    def work(worker: str) -> None:
        live: dict[str, int] = {}
        try:
            barrier.wait()
            for op in scripts[worker]:
                run_op(index, op, worker, live)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    def save() -> None:
        try:
            barrier.wait()
            while not done.is_set() and len(snapshots) < 4:
                snapshots.append(tmp_path / f"snapshot-{len(snapshots)}")
                index.save(snapshots[-1])
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in scripts]
    threads.append(threading.Thread(target=save))
    for t in threads:
        t.start()
    for t in threads[:-1]:
        t.join(timeout=120)
    done.set()
    threads[-1].join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    for path in snapshots:
        check_hits(HybridIndex.load(path, m3x).search(QUERIES[0], k=ALL, mode="dense"))
    shared = index.get(["shared"])
    assert len(shared) == 1 and shared[0].metadata["group"] == "shared"

    concurrent_purged = sum(purged)
    serial = replay_serially(m3x, scripts)
    for idx in (index, serial):
        idx.delete(["shared"])
    assert_same_state(index, serial, all_ids(scripts))
    n_ops = sum(map(len, scripts.values()))
    record_property("iterations", n_ops)
    record_property("held", (
        f"{n_ops} operations on 8 threads + {len(snapshots)} concurrent saves, "
        f"{concurrent_purged} dead rows compacted meanwhile: no error, every search "
        "consistent, final records and scores == serial run"))


def test_hundred_asyncio_calls_on_one_index_and_embedder(m3x: BGEM3Embedder,  # noqa: F811
                                                         record_property: Callable) -> None:
    """100 concurrent asyncio.to_thread calls on one HybridIndex and its BGEM3Embedder: each adds
    its group, searches (filtered to its own and the base documents), deletes every other group,
    searches again and encodes a query (dense + sparse + ColBERT).

    Checks: no exception; every search is consistent and shows the call's own writes; the
    encodings equal serial ones within 1e-6; the final state equals the serial run.
    """
    scripts = {f"a{i}": [("add", f"a{i}-g0", 1), ("search", MODES[i % 4], 0),
                         *([("delete", f"a{i}-g0", 0)] if i % 2 else []),
                         ("search", MODES[(i + 1) % 4], 0)] for i in range(100)}
    queries = [f"{QUERIES[i % len(QUERIES)]} #{i}" for i in range(100)]
    serial_enc = [m3x.encode_queries([q], dense=True, sparse=True, colbert=True)
                  for q in queries]
    index = new_index(m3x)

    def call(i: int) -> None:
        worker = f"a{i}"
        live: dict[str, int] = {}
        for op in scripts[worker]:
            run_op(index, op, worker, live, narrow=True)
        out = m3x.encode_queries([queries[i]], dense=True, sparse=True, colbert=True)
        want = serial_enc[i]
        np.testing.assert_allclose(out.dense, want.dense, rtol=1e-5, atol=1e-6)
        assert out.sparse[0].keys() == want.sparse[0].keys()
        np.testing.assert_allclose([out.sparse[0][t] for t in want.sparse[0]],
                                   list(want.sparse[0].values()), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out.colbert[0], want.colbert[0], rtol=1e-5, atol=1e-6)

    async def main() -> None:
        await asyncio.gather(*(asyncio.to_thread(call, i) for i in range(100)))

    asyncio.run(main())
    serial = replay_serially(m3x, scripts)
    assert len(index) == len(BASE) + 50 * GROUP_SIZE
    assert_same_state(index, serial, all_ids(scripts))
    record_property("iterations", 100)
    record_property("held", (
        "100 concurrent calls (350 index operations, 100 encodings): no error, every search "
        "consistent, encodings == serial, final records and scores == serial run"))


# -- several processes on one index directory -----------------------------------------------------
def _process_writer(directory: str, m3: BGEM3Embedder, encoded: Any, writer: int, saves: int,
                    out: Any) -> None:
    try:
        for version in range(saves):
            n = 2 + (writer + version) % 4  # versions differ in size
            index = HybridIndex(m3)
            index.add_embeddings(
                [f"w{writer} v{version} doc {i}" for i in range(n)],
                dense=encoded.dense[:n], sparse=encoded.sparse[:n], colbert=encoded.colbert[:n],
                metadatas=[{"writer": writer, "version": version, "n": n}] * n)
            index.save(directory)
        out.put(("saved", saves))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.put(("error", f"writer {writer}: {exc!r}"))


def _process_reader(directory: str, m3: BGEM3Embedder, stop: Any, out: Any) -> None:
    loads = 0
    try:
        while not stop.is_set() or not loads:
            index = HybridIndex.load(directory, m3)
            records = index.get([h.id for h in index.search("doc", k=100, mode="dense")])
            versions = {(r.metadata["writer"], r.metadata["version"], r.metadata["n"])
                        for r in records}
            (writer, version, n), = versions  # one whole generation, never a mix
            assert len(records) == n == len(index), (versions, len(records))
            loads += 1
        out.put(("loaded", loads))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.put(("error", f"reader after {loads} loads: {exc!r}"))


def test_processes_load_while_other_processes_save(m3x: BGEM3Embedder,  # noqa: F811
                                                   tmp_path: Path,
                                                   record_property: Callable) -> None:
    """2 writer processes each save 12 different versions of an index into one directory while
    3 reader processes load it in a loop (fork start; tiny model)."""
    import multiprocessing

    encoded = m3x.encode_documents([f"document {i}" for i in range(6)], dense=True, sparse=True,
                                   colbert=True)
    directory = str(tmp_path / "shared")
    first = HybridIndex(m3x)
    first.add_embeddings(["seed"], dense=encoded.dense[:1], sparse=encoded.sparse[:1],
                         colbert=encoded.colbert[:1],
                         metadatas=[{"writer": -1, "version": 0, "n": 1}])
    first.save(directory)
    ctx = multiprocessing.get_context("fork")
    out, stop = ctx.Queue(), ctx.Event()
    writers = [ctx.Process(target=_process_writer, args=(directory, m3x, encoded, w, 12, out))
               for w in range(2)]
    readers = [ctx.Process(target=_process_reader, args=(directory, m3x, stop, out))
               for _ in range(3)]
    for p in readers + writers:
        p.start()
    results = [out.get(timeout=600) for _ in writers]
    stop.set()
    results += [out.get(timeout=600) for _ in readers]
    for p in readers + writers:
        p.join(timeout=60)
    errors = [r[1] for r in results if r[0] == "error"]
    assert not errors, errors
    loads = sum(r[1] for r in results if r[0] == "loaded")
    final = HybridIndex.load(directory, m3x)
    assert len(final) == final.get([final.search("doc", k=1, mode="dense")[0].id])[0].metadata[
        "n"]
    record_property("iterations", loads + 24)
    record_property("held", f"{loads} loads during 24 saves from 2 processes: every load got one "
                            "whole generation, no error; saves serialised")
