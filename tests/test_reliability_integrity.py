"""Index integrity: interrupts at every step, full disks, crafted files, churn and leftovers.

Every failure must leave an index either exactly as it was before the call, or raise a clear
error; never a third state. Interrupts are injected with a profile hook that raises at the
k-th function call made by (or into) ``bge_integrations.retrieval``, for every k the call has.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import random_changes

from bge_integrations import BGEEmbedder, BGEM3Embedder, DenseIndex, HybridIndex
from bge_integrations.core.m3 import M3Output
from bge_integrations.retrieval import IndexFileError, doc_rows, persistence, storage
from bge_integrations.retrieval import dense as dense_module
from bge_integrations.retrieval import index as index_module
from bge_integrations.retrieval.persistence import LOCK_FILE, MANIFEST
from bge_integrations.tiny_models import TINY_CORPUS

RETRIEVAL = os.sep + os.path.join("bge_integrations", "retrieval") + os.sep
TEXTS = list(TINY_CORPUS[:10])
QUERIES = ["what is a panda bear?", "capital of France"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def encoded(m3: BGEM3Embedder) -> M3Output:
    return m3.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)


def outputs(encoded: M3Output, rows: list[int]) -> dict[str, Any]:
    return {"dense": encoded.dense[rows], "sparse": [encoded.sparse[r] for r in rows],
            "colbert": [encoded.colbert[r] for r in rows]}


# -- the injector --------------------------------------------------------------------------------
class Injected(KeyboardInterrupt):
    """The interrupt raised by :func:`run_failing_at` (a KeyboardInterrupt, like Ctrl-C)."""


def _in_retrieval(frame: Any) -> bool:
    return frame is not None and RETRIEVAL in frame.f_code.co_filename


#: cleanups that ``with`` and ``finally`` run (lock releases, closing a file): an exception
#: raised instead of them would leak the lock or descriptor in any Python code
CLEANUPS = frozenset({"__exit__", "release", "close"})


def run_failing_at(call: Callable[[], Any], k: int | None,
                   make_error: Callable[[], BaseException] = Injected) -> int:
    """Run ``call``, raising ``make_error()`` at the ``k``-th call event made by or into the
    retrieval package (``k=None``: never), cleanups aside. Returns the number of events."""
    seen = [0]

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            counted = frame.f_code.co_name not in CLEANUPS and (
                _in_retrieval(frame) or _in_retrieval(frame.f_back))
        elif event == "c_call":
            counted = _in_retrieval(frame) and getattr(arg, "__name__", "") not in CLEANUPS
        else:
            return
        if counted:
            seen[0] += 1
            if seen[0] == k:
                raise make_error()

    sys.setprofile(hook)
    try:
        call()
    finally:
        sys.setprofile(None)
    return seen[0]


def hybrid_snapshot(index: HybridIndex) -> dict[str, Any]:
    """Everything a reader can observe, per document: record and the three vectors."""
    state = index._state
    sparse = state.sparse.matrix()
    out = {}
    for doc_id, row in state.row_of.items():
        assert state.alive[row] and state.ids.view[row] == doc_id
        vec = sparse[row]
        out[doc_id] = (state.texts.view[row], json.dumps(state.metadatas.view[row]),
                       state.dense.view[row].tobytes(),
                       tuple(zip(vec.indices.tolist(), vec.data.tolist(), strict=False)),
                       None if state.colbert is None else
                       state.colbert.gather(np.array([row]))[0].tobytes())
    assert len(out) == len(index) == int(state.alive.sum())
    return out


def dense_snapshot(index: DenseIndex) -> dict[str, Any]:
    state = index._state
    out = {}
    for doc_id, row in state.row_of.items():
        assert state.alive[row] and state.ids.view[row] == doc_id
        out[doc_id] = (state.texts.view[row], json.dumps(state.metadatas.view[row]),
                       state.vectors.view[row].tobytes())
    assert len(out) == len(index) == int(state.alive.sum())
    return out


def check_every_step(build: Callable[[], Any], op: Callable[[Any], Any],
                     snapshot: Callable[[Any], Any], round_trip: Callable[[Any, Path], Any],
                     tmp_path: Path) -> tuple[int, int]:
    """For every step k of ``op``: fail there (alternately an interrupt and a full-disk
    OSError); the index must equal its state before the call, or (a failure after the new
    state was published, e.g. in the ``return``) the state after it. Then run ``op`` again
    (it must equal a clean run), and every 16th k also save and load.

    Returns the step count and how many failure points came after the publication.
    """
    reference = build()
    before = snapshot(reference)
    steps = run_failing_at(lambda: op(reference), None)
    after = snapshot(reference)
    assert steps > 5 and after != before
    late = 0
    for k in range(1, steps + 1):
        index = build()
        error = Injected if k % 2 else (lambda: OSError(errno.ENOSPC, "injected disk full"))
        try:
            run_failing_at(lambda: op(index), k, error)  # noqa: B023
            raised = False  # raised where Python ignores it (a generator's finaliser)
        except (Injected, OSError):
            raised = True
        got = snapshot(index)
        assert got in (before, after), f"step {k}/{steps} left a third state"
        assert raised or got == after
        late += got == after
        op(index)
        assert snapshot(index) == after, f"after a failure at step {k}, a rerun differs"
        if k % 16 == 1:
            folder = tmp_path / f"k{k}"
            index.save(folder)
            assert snapshot(round_trip(index, folder)) == after
    assert late <= 3, f"{late} failure points came after the publication"
    return steps, late


HYBRID_OPS: dict[str, Callable[[HybridIndex, M3Output], Any]] = {
    "add": lambda idx, enc: idx.add([TEXTS[7], TEXTS[1]], metadatas=[{"n": 7}, {"n": 1}],
                                    ids=["d7", "d1"]),
    "add_embeddings": lambda idx, enc: idx.add_embeddings(
        [TEXTS[8], TEXTS[2]], **outputs(enc, [8, 2]), ids=["d8", "d2"]),
    "delete": lambda idx, enc: idx.delete(["d0", "d3", "nope"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("compaction", ["none", "rows", "colbert-file"])
@pytest.mark.parametrize("op", sorted(HYBRID_OPS))
def test_interrupt_at_every_step_of_a_hybrid_change(
        m3: BGEM3Embedder, encoded: M3Output, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        record_property: Callable[[str, object], None], op: str, compaction: str) -> None:
    """KeyboardInterrupt or OSError(ENOSPC) injected at every call step of HybridIndex.add,
    add_embeddings and delete (the ColBERT staging write included), with and without row
    compaction and ColBERT spill-file compaction running inside the call."""
    during_op = {"rows": (1, 10**9), "colbert-file": (10**9, 0), "none": (10**9, 10**9)}

    def build() -> HybridIndex:
        monkeypatch.setattr(doc_rows, "COMPACT_MIN_DEAD", 10**9)
        monkeypatch.setattr(storage, "SPILL_SLACK_TOKENS", 10**9)
        index = HybridIndex(m3)
        for _ in range(3):  # 6 live rows, 12 dead ones, 18 rows of vectors in the spill file
            index.add_embeddings(TEXTS[:6], **outputs(encoded, list(range(6))),
                                 metadatas=[{"n": i} for i in range(6)],
                                 ids=[f"d{i}" for i in range(6)])
        rows, slack = during_op[compaction]
        monkeypatch.setattr(doc_rows, "COMPACT_MIN_DEAD", rows)
        monkeypatch.setattr(storage, "SPILL_SLACK_TOKENS", slack)
        return index

    probe = build()
    spill, n_rows = probe._state.colbert._spill, len(probe._state.ids)
    HYBRID_OPS[op](probe, encoded)
    if compaction == "rows":  # the call did compact: fewer rows than before it
        assert len(probe._state.ids) < n_rows
    elif compaction == "colbert-file":  # the call did rewrite the spill file
        assert probe._state.colbert._spill is not spill
    steps, late = check_every_step(
        build, lambda idx: HYBRID_OPS[op](idx, encoded), hybrid_snapshot,
        lambda idx, folder: HybridIndex.load(folder, m3), tmp_path)
    record_property("iterations", steps)
    record_property("held", f"{steps}/{steps} failure points: index == before ({steps - late}) "
                            f"or == after ({late}, failed in the return); rerun == clean run; "
                            "save/load round-trips")


DENSE_OPS: dict[str, Callable[[DenseIndex, np.ndarray], Any]] = {
    "add": lambda idx, vec: idx.add([TEXTS[7], TEXTS[1]], ids=["d7", "d1"]),
    "add_embeddings": lambda idx, vec: idx.add_embeddings([TEXTS[8]], vec[[8]], ids=["d2"]),
    "delete": lambda idx, vec: idx.delete(["d0", "d3"]),
}


@pytest.mark.parametrize("op", sorted(DENSE_OPS))
def test_interrupt_at_every_step_of_a_dense_change(
        bert_embedder: BGEEmbedder, tmp_path: Path,
        record_property: Callable[[str, object], None], op: str) -> None:
    """KeyboardInterrupt or OSError(ENOSPC) injected at every call step of DenseIndex.add,
    add_embeddings and delete."""
    vectors = bert_embedder.encode_documents(TEXTS)

    def build() -> DenseIndex:
        index = DenseIndex(bert_embedder)
        index.add_embeddings(TEXTS[:6], vectors[:6], ids=[f"d{i}" for i in range(6)])
        return index

    steps, late = check_every_step(
        build, lambda idx: DENSE_OPS[op](idx, vectors), dense_snapshot,
        lambda idx, folder: DenseIndex.load(folder, bert_embedder), tmp_path)
    record_property("iterations", steps)
    record_property("held", f"{steps}/{steps} failure points: index == before ({steps - late}) "
                            f"or == after ({late}, failed in the return); rerun == clean run")


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hybrid", "dense"])
def test_interrupt_or_full_disk_at_every_step_of_a_save(
        m3: BGEM3Embedder, bert_embedder: BGEEmbedder, encoded: M3Output, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, object], None],
        kind: str) -> None:
    """KeyboardInterrupt, or OSError ENOSPC / EDQUOT / EFBIG, injected at every call step of a
    save over an existing index; then the directory is loaded and saved once more."""
    if kind == "hybrid":
        old, new = HybridIndex(m3), HybridIndex(m3)
        old.add_embeddings(TEXTS[:3], **outputs(encoded, [0, 1, 2]))
        new.add_embeddings(TEXTS[3:7], **outputs(encoded, [3, 4, 5, 6]))

        def load(folder: Path) -> Any:
            return hybrid_snapshot(HybridIndex.load(folder, m3))
        snap = hybrid_snapshot
    else:
        old, new = DenseIndex(bert_embedder), DenseIndex(bert_embedder)
        old.add(TEXTS[:3])
        new.add(TEXTS[3:7])

        def load(folder: Path) -> Any:
            return dense_snapshot(DenseIndex.load(folder, bert_embedder))
        snap = dense_snapshot
    pristine, folder = tmp_path / "pristine", tmp_path / "ix"
    old.save(pristine)
    old_generation = _generation(pristine)
    fingerprints = {"hybrid": index_module, "dense": dense_module}[kind]
    name = "model_fingerprint" if kind == "hybrid" else "dense_fingerprint"
    cached = {id(old): getattr(fingerprints, name)(m3 if kind == "hybrid" else bert_embedder,
                                                    *((True,) if kind == "hybrid" else ()))}
    monkeypatch.setattr(fingerprints, name, lambda *args: cached[id(old)])  # no model per save
    steps = run_failing_at(lambda: new.save(tmp_path / "count"), None)
    codes = [c for c in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if c]
    switched = explained = 0
    for k in range(1, steps + 1):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(pristine, folder)
        code = codes[k % len(codes)]
        error = Injected if k % 2 else (lambda: OSError(code, os.strerror(code)))  # noqa: B023
        try:
            run_failing_at(lambda: new.save(folder), k, error)  # noqa: B023
            failure: BaseException | None = None  # swallowed: best-effort tidying after the switch
        except (Injected, OSError) as exc:
            failure = exc
        if isinstance(failure, OSError):  # raised in the save itself: says so
            assert failure.errno == code
            explained += "Nothing was changed" in str(failure)
        kept_old = _generation(folder) == old_generation
        if not kept_old or k % 8 == 0:  # a switched directory (rare) is loaded every time
            assert load(folder) == snap(old if kept_old else new), f"step {k}"
        assert kept_old or not isinstance(failure, OSError), f"step {k}: OSError after a switch"
        switched += not kept_old
        if failure is None:
            assert not kept_old, f"step {k}: no error, but the save did not happen"
        new.save(folder)
        assert _entries(folder) == sorted([MANIFEST, LOCK_FILE, _generation(folder)]), (
            f"step {k}: leftovers")
    assert load(folder) == snap(new)
    assert explained > steps // 4
    record_property("iterations", steps)
    record_property("held", f"{steps}/{steps} failure points: disk == old save ({steps - switched})"
                            f" or new save ({switched}, interrupted after the switch); "
                            f"{explained} disk-full errors in the writing said nothing changed; "
                            "the next save left no debris")


def _generation(folder: Path) -> str:
    return json.loads((folder / MANIFEST).read_text())["generation"]


@pytest.mark.slow
def test_real_file_size_limit_gives_a_clear_error(m3: BGEM3Embedder, encoded: M3Output,
                                                  tmp_path: Path,
                                                  record_property: Callable[..., None]) -> None:
    """A real RLIMIT_FSIZE (the kernel refuses writes past 64 KiB with EFBIG) while a subprocess
    saves a HybridIndex whose ColBERT file is larger, over a smaller earlier save."""
    script = textwrap.dedent(f"""
        import errno, resource, sys
        import numpy as np
        from bge_integrations import BGEM3Embedder, HybridIndex
        m3 = BGEM3Embedder({str(m3.model_name)!r}, device="cpu")
        small, big = HybridIndex(m3), HybridIndex(m3)
        small.add(["a small index"], ids=["s"])
        small.save(sys.argv[1])
        rng = np.random.default_rng(0)
        vecs = [rng.standard_normal((300, m3.dim)).astype(np.float32) for _ in range(8)]
        big.add_embeddings([f"t{{i}}" for i in range(8)], dense=np.ones((8, m3.dim), np.float32),
                           sparse=[{{5: 1.0}}] * 8, colbert=vecs)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.getrlimit(
            resource.RLIMIT_FSIZE)[1]))
        try:
            big.save(sys.argv[1])
        except OSError as exc:
            print("errno", exc.errno == errno.EFBIG, "Nothing was changed" in str(exc))
        print("searchable", len(big.search("t1", k=3, mode="colbert")))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ix")],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "errno True True" in result.stdout and "searchable 3" in result.stdout
    loaded = HybridIndex.load(tmp_path / "ix", m3)
    assert [r.id for r in loaded.get(["s"])] == ["s"] and len(loaded) == 1
    record_property("held", "EFBIG -> OSError saying nothing changed; previous save loads; the "
                            "index in memory still searches")


# -- the ColBERT spill file ------------------------------------------------------------------------
def test_colbert_spill_file_stays_bounded_under_churn(
        m3: BGEM3Embedder, encoded: M3Output, record_property: Callable[..., None]) -> None:
    """3000 cycles of upserting two documents, deleting one and re-adding it; the spill file's
    size is checked after every call against 2 x live tokens + SPILL_SLACK_TOKENS."""
    index = HybridIndex(m3)
    row_bytes = m3.dim * 4
    cycles, peak = 3000, 0
    for n in range(cycles):
        a, b = n % len(TEXTS), (n + 3) % len(TEXTS)
        index.add_embeddings([TEXTS[a], TEXTS[b]], **outputs(encoded, [a, b]), ids=["x", "y"])
        index.delete(["y"])
        index.add_embeddings([TEXTS[b]], **outputs(encoded, [b]), ids=["y"])
        state = index._state
        colbert = state.colbert
        live = colbert.spill_live_tokens(state.alive)
        size = colbert._spill.size() // row_bytes
        assert size <= 2 * live + storage.SPILL_SLACK_TOKENS + 2 * max(
            len(c) for c in encoded.colbert), (n, size, live)
        peak = max(peak, size)
    assert hybrid_snapshot(index)["x"][4] == encoded.colbert[(cycles - 1) % len(TEXTS)].tobytes()
    record_property("iterations", cycles)
    record_property("held", f"spill file peaked at {peak} token vectors for {live} live ones "
                            f"(bound 2 x live + {storage.SPILL_SLACK_TOKENS})")


@pytest.mark.slow
def test_killed_process_leaves_no_colbert_file(m3: BGEM3Embedder, tmp_path: Path,
                                               record_property: Callable[..., None]) -> None:
    """A process adds documents to a HybridIndex whose colbert_dir is an empty folder, then is
    killed with SIGKILL (and another with SIGTERM)."""
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from bge_integrations import BGEM3Embedder, HybridIndex
        index = HybridIndex(BGEM3Embedder({m3.model_name!r}, device="cpu"),
                            colbert_dir={str(spill_dir)!r})
        index.add(["one document", "another one"])
        print("files", len(os.listdir({str(spill_dir)!r})), flush=True)
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        time.sleep(30)
    """)
    for sig in ("SIGKILL", "SIGTERM"):
        result = subprocess.run([sys.executable, "-c", script, sig], capture_output=True,
                                text=True, timeout=300,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert result.returncode == -getattr(signal, sig), result.stderr[-2000:]
        assert "files 0" in result.stdout  # unlinked as soon as it was opened
        assert list(spill_dir.iterdir()) == []
    record_property("iterations", 2)
    record_property("held", "the spill file had no name while in use; nothing left after kills")


# -- saves never delete what they did not write --------------------------------------------------
def test_save_never_deletes_files_it_did_not_write(m3: BGEM3Embedder, encoded: M3Output,
                                                   tmp_path: Path,
                                                   record_property: Callable[..., None]) -> None:
    """Files that look like a save's own (.tmp-*, 32-hex folders of .npy/.json, a stray
    manifest-like .tmp json) in a non-empty directory at the first save, and added next to a
    saved index before later saves."""
    index = HybridIndex(m3)
    index.add_embeddings(TEXTS[:2], **outputs(encoded, [0, 1]))
    lookalikes = {".tmp-0123456789abcdef0123456789abcdef": "x.npy",
                  "0123456789abcdef0123456789abcdef": "dense.npy",
                  "fedcba9876543210fedcba9876543210": "docs.json"}

    def plant(folder: Path) -> None:
        for name, file in lookalikes.items():
            (folder / name).mkdir(parents=True)
            (folder / name / file).write_text("user data")
        (folder / ".tmp-abc.json").write_text("user data")

    first = tmp_path / "first"
    plant(first)
    with pytest.raises(ValueError, match="not empty and holds no saved index"):
        index.save(first)
    later = tmp_path / "later"
    index.save(later)
    plant(later)
    for _ in range(3):
        index.save(later)
    for folder in (first, later):
        for name, file in lookalikes.items():
            assert (folder / name / file).read_text() == "user data"
        assert (folder / ".tmp-abc.json").read_text() == "user data"
    record_property("held", "every planted file survived a refused first save and 3 saves")


# -- readers are not blocked by a save -------------------------------------------------------------
def test_search_is_not_blocked_by_a_slow_save(m3: BGEM3Embedder, encoded: M3Output,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              record_property: Callable[..., None]) -> None:
    """A save that takes 1.5 s (slowed file writes), an add queued while it runs, and searches
    meanwhile."""
    index = HybridIndex(m3)
    index.add_embeddings(TEXTS[:5], **outputs(encoded, list(range(5))))
    real = persistence.write_docs

    def slow_write_docs(*args: Any) -> None:
        time.sleep(1.5)
        real(*args)

    monkeypatch.setattr(index_module, "write_docs", slow_write_docs)
    saver = threading.Thread(target=index.save, args=(tmp_path / "ix",))
    saver.start()
    time.sleep(0.2)
    adder = threading.Thread(target=index.add_embeddings,
                             args=([TEXTS[6]],), kwargs=outputs(encoded, [6]))
    adder.start()
    time.sleep(0.1)
    start = time.perf_counter()
    hits = index.search(QUERIES[0], k=10)
    waited = time.perf_counter() - start
    adder.join()
    saver.join()
    assert not saver.is_alive() and len(hits) in (5, 6) and waited < 0.75
    assert len(HybridIndex.load(tmp_path / "ix", m3)) == 5  # the state when save began
    record_property("held", f"search answered in {waited * 1000:.0f} ms during a 1.5 s save")


# -- crafted files ---------------------------------------------------------------------------------
def _reseal(folder: Path) -> None:
    """Recompute every checksum, as an attacker who edits the files would (a manifest that
    does not parse stays as it is)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except RecursionError:
        return
    generation = folder / manifest["generation"]
    for name in manifest["files"]:
        if not (generation / name).is_file():
            continue
        data = (generation / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest[persistence.MANIFEST_CHECKSUM] = persistence._manifest_checksum(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _npy(folder: Path, name: str, array: np.ndarray) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    np.save(folder / manifest["generation"] / name, array)


def _raw_header(folder: Path, name: str, shape: tuple[int, ...], dtype: str = "<f4") -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    path = folder / manifest["generation"] / name
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": dtype, "fortran_order": False, "shape": shape})
        f.write(b"\0" * 64)


def _docs(folder: Path, text: str) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / manifest["generation"] / "docs.json").write_text(text)


def _edit(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _manifest_text(folder: Path, old: str, new: str) -> None:
    path = folder / MANIFEST
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


I64 = np.iinfo(np.int64)
CRAFTED: dict[str, Callable[[Path], None]] = {
    "wrapping sparse_indptr": lambda d: _npy(d, "sparse_indptr.npy", np.array(
        [0, I64.max, I64.min + 5, 5], np.int64)),
    "sparse_indptr past indices": lambda d: _npy(d, "sparse_indptr.npy",
                                                 np.array([0, 1, 10**6, 3], np.int64)),
    "wrapping colbert_offsets": lambda d: _npy(d, "colbert_offsets.npy", np.array(
        [0, I64.max, I64.min, 6], np.int64)),
    "decreasing colbert_offsets": lambda d: _npy(d, "colbert_offsets.npy",
                                                 np.array([0, 4, 2, 6], np.int64)),
    "119 GiB header": lambda d: _raw_header(d, "dense.npy", (3, 10**10)),
    "negative shape": lambda d: _raw_header(d, "dense.npy", (-3, 32)),
    "fortran order": lambda d: _npy(d, "dense.npy", np.asfortranarray(np.ones((3, 32), "<f4"))),
    "NaN dense": lambda d: _npy(d, "dense.npy", np.full((3, 32), np.nan, np.float32)),
    "negative sparse weight": lambda d: _npy(d, "sparse_values.npy", -np.ones(
        np.load(d / json.loads((d / MANIFEST).read_text())["generation"]
                / "sparse_values.npy").shape, np.float32)),
    "100k-deep docs.json": lambda d: _docs(d, '{"ids": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "600-deep metadata": lambda d: _docs(d, json.dumps(
        {"ids": ["a", "b", "c"], "texts": ["a", "b", "c"],
         "metadatas": [{"x": json.loads("[" * 600 + "]" * 600)}, {}, {}]})),
    "docs.json not an object": lambda d: _docs(d, "[1, 2, 3]"),
    "rrf_k=10**400": lambda d: _manifest_text(d, '"rrf_k": 60', '"rrf_k": 1' + "0" * 400),
    "rrf_k=1e400": lambda d: _manifest_text(d, '"rrf_k": 60', '"rrf_k": 1e400'),
    "rrf_k=NaN": lambda d: _manifest_text(d, '"rrf_k": 60', '"rrf_k": NaN'),
    "candidates=true": lambda d: _edit(d, lambda m: m["config"].update(candidates=True)),
    "count=-1": lambda d: _edit(d, lambda m: m.update(count=-1)),
    "count=2**70": lambda d: _edit(d, lambda m: m.update(count=2**70)),
    "deep manifest": lambda d: _manifest_text(d, '"rrf_k": 60',
                                              '"rrf_k": ' + "[" * 100_000 + "]" * 100_000),
    "file bytes=-5": lambda d: _edit(d, lambda m: m["files"].update(
        {"extra.npy": {"bytes": -5, "sha256": "0" * 64}})),
    "model dim=10**9": lambda d: _edit(d, lambda m: m["model"].update(dim=10**9)),
    "probe not a list": lambda d: _edit(d, lambda m: m["model"]["probe"].update(dense="x")),
    "format_version=1.0": lambda d: _edit(d, lambda m: m.update(format_version=1.0)),
}


@pytest.mark.parametrize("craft", sorted(CRAFTED))
def test_crafted_hybrid_index_files_raise_index_file_error(
        m3: BGEM3Embedder, encoded: M3Output, tmp_path: Path,
        record_property: Callable[..., None], craft: str) -> None:
    """A saved HybridIndex edited as an attacker would (checksums recomputed): wrapping int64
    offsets, huge or negative headers, deep JSON, unbounded numbers, wrong types."""
    index = HybridIndex(m3)
    index.add_embeddings(TEXTS[:3], **outputs(encoded, [0, 1, 2]), ids=["a", "b", "c"])
    folder = tmp_path / "ix"
    index.save(folder)
    CRAFTED[craft](folder)
    _reseal(folder)
    start = time.perf_counter()
    with pytest.raises(IndexFileError):
        HybridIndex.load(folder, m3)
    assert time.perf_counter() - start < 30
    record_property("held", "IndexFileError before any use")


DENSE_CRAFTED: dict[str, Callable[[Path], None]] = {
    "8 MB query padding": lambda d: _edit(d, lambda m: m["model"].update(
        query_instruction_format="{}{:>8000000}")),
    "three fields": lambda d: _edit(d, lambda m: m["model"].update(
        query_instruction_format="{}{}{}")),
    "named field": lambda d: _edit(d, lambda m: m["model"].update(
        query_instruction_format="{0.__class__}{}")),
    "conversion": lambda d: _edit(d, lambda m: m["model"].update(
        query_instruction_format="{!r}{}")),
    "1 MB instruction": lambda d: _edit(d, lambda m: m["model"].update(
        query_instruction="x" * (1 << 20))),
    "unknown pooling": lambda d: _edit(d, lambda m: m["model"].update(pooling="max")),
    "source is a list": lambda d: _edit(d, lambda m: m["model"].update(source=["x"])),
}


@pytest.mark.parametrize("craft", sorted(DENSE_CRAFTED))
def test_crafted_dense_manifest_raises_index_file_error(
        bert_embedder: BGEEmbedder, tmp_path: Path, record_property: Callable[..., None],
        craft: str) -> None:
    """A saved DenseIndex manifest re-sealed with a query_instruction_format that pads every
    query, other format fields, a huge instruction, a bad pooling or source; loaded without an
    embedder (the recorded one is built)."""
    index = DenseIndex(bert_embedder)
    index.add(TEXTS[:2])
    folder = tmp_path / "ix"
    index.save(folder)
    DENSE_CRAFTED[craft](folder)
    _reseal(folder)
    with pytest.raises(IndexFileError):
        DenseIndex.load(folder, device="cpu")
    record_property("held", "IndexFileError before a model is built")


# -- metadata and filter bounds --------------------------------------------------------------------
def test_metadata_and_filter_bombs_are_refused_at_the_door(
        m3: BGEM3Embedder, encoded: M3Output, record_property: Callable[..., None]) -> None:
    """Metadata nested 33/600/100k deep or over 1 MiB, filters nested 40/350/5000 deep, a
    $in of 100k values, bytes where a list is expected; stored 10**20 and 2**70 ints with
    numeric filters."""
    index = HybridIndex(m3)
    index.add_embeddings(TEXTS[:3], **outputs(encoded, [0, 1, 2]), ids=["a", "b", "c"],
                         metadatas=[{"n": 10**20}, {"n": 2**70, "m": [1, 2]}, {"n": 5.5}])
    refused = 0
    for depth in (33, 600, 100_000):
        deep: Any = 1
        for _ in range(depth):
            deep = [deep]
        with pytest.raises(ValueError, match="levels deep"):
            index.add_embeddings([TEXTS[3]], **outputs(encoded, [3]), metadatas=[{"x": deep}])
        refused += 1
    with pytest.raises(ValueError, match="over 1048576 bytes"):
        index.add_embeddings([TEXTS[3]], **outputs(encoded, [3]),
                             metadatas=[{"x": "y" * (1 << 20)}])
    refused += 1
    for depth in (40, 350, 5000):
        spec: dict[str, Any] = {"n": 1}
        for _ in range(depth):
            spec = {"$and": [spec]}
        with pytest.raises(ValueError, match="nested more than"):
            index.search("x", filter=spec)
        refused += 1
    for bad in ({"n": {"$in": b"\x03\x05"}}, {"$or": b"ab"}, {"n": {"$in": bytearray(b"\x03")}},
                {"n": {"$in": list(range(100_001))}}):
        with pytest.raises(ValueError):
            index.search("x", filter=bad)
        refused += 1
    cases = {"$gte": 10**19, "$lt": 10**21, "$gt": 2**69, "$lte": 10**400}
    for op, value in cases.items():
        got = {h.id for h in index.search("x", k=5, mode="dense", filter={"n": {op: value}})}
        want = {i for i, n in (("a", 10**20), ("b", 2**70), ("c", 5.5))
                if {"$gte": n >= value, "$lt": n < value, "$gt": n > value,
                    "$lte": n <= value}[op]}
        assert got == want, (op, got, want)
    assert {h.id for h in index.search("x", k=5, filter={"n": 10**20})} == {"a"}
    assert {h.id for h in index.search("x", k=5, filter={"n": {"$in": [2**70, 5.5]}})} == {
        "b", "c"}
    record_property("iterations", refused + len(cases) + 2)
    record_property("held", f"{refused}/{refused} bombs refused with ValueError; big-int "
                            "filters exact")


FILTER_CASES = [
    {"year": 2024}, {"year": 2024.0}, {"year": {"$in": [2024, 7]}},
    {"year": {"$in": [2024.0]}}, {"year": {"$ne": 2024}}, {"year": {"$ne": 2024.0}},
    {"year": {"$gte": 2024}}, {"year": {"$lt": 2024.5}}, {"flag": True}, {"flag": 1},
    {"flag": {"$ne": True}}, {"year": {"$in": [True, "2024"]}}, {"tags": 3},
    {"tags": {"$ne": 3}}, {"tags": {"$in": [3.0, "x"]}}, {"year": 2**60}, {"year": 1e20},
    {"$or": [{"year": 2024}, {"flag": False}]}, {"name": "2024"},
]


def test_qdrant_and_embedded_filters_select_the_same_documents(
        m3: BGEM3Embedder, encoded: M3Output, record_property: Callable[..., None]) -> None:
    """The same filters (2024 vs 2024.0 for equality, $in, $ne; bools vs ints; lists; a
    2**60 int) on payloads stored as ints, floats, bools, strings and lists, on both backends
    (qdrant-client local mode)."""
    pytest.importorskip("qdrant_client")
    from bge_integrations.retrieval import QdrantHybridIndex

    metas = [{"year": 2024}, {"year": 2024.0}, {"year": 2023}, {"year": True, "flag": True},
             {"year": "2024", "flag": 1}, {"tags": [3, "x"], "flag": False},
             {"tags": [3.0]}, {"year": 2**60, "name": "2024"}, {}]
    ids = [f"m{i}" for i in range(len(metas))]
    embedded = HybridIndex(m3)
    qdrant = QdrantHybridIndex(m3, location=":memory:")
    rows = list(range(len(metas)))
    for index in (embedded, qdrant):
        index.add_embeddings(TEXTS[:len(metas)], **outputs(encoded, rows), metadatas=metas,
                             ids=ids)
    for spec in FILTER_CASES:
        got = {h.id for h in qdrant.search("x", k=20, mode="dense", filter=spec)}
        want = {h.id for h in embedded.search("x", k=20, mode="dense", filter=spec)}
        assert got == want, spec
    assert {h.id for h in embedded.search("x", k=20, filter={"year": 2024})} == {"m0", "m1"}
    record_property("iterations", len(FILTER_CASES))
    record_property("held", f"{len(FILTER_CASES)}/{len(FILTER_CASES)} filters: same documents")



def test_random_changes_match_a_plain_dict_model(m3: BGEM3Embedder, encoded: M3Output,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  record_property: Callable[..., None]) -> None:
    """600 random upserts, deletes and save/load cycles over 12 ids, with row compaction after
    2 dead rows and the ColBERT spill file rewritten as soon as it holds a dead vector; after
    every step each document's text, metadata and three vectors are compared with a dict."""
    monkeypatch.setattr(doc_rows, "COMPACT_MIN_DEAD", 2)
    monkeypatch.setattr(storage, "SPILL_SLACK_TOKENS", 0)

    def add(index: HybridIndex, rows: list[int], metas: list[dict], ids: list[str]) -> None:
        index.add_embeddings([TEXTS[r] for r in rows], **outputs(encoded, rows),
                             metadatas=metas, ids=ids)

    def reload(index: HybridIndex) -> HybridIndex:
        index.save(tmp_path / "ix")
        return HybridIndex.load(tmp_path / "ix", m3)

    counts = {"upsert": 0, "delete": 0, "reload": 0}
    for step, kind, index, model in random_changes(HybridIndex(m3), steps=600, seed=16,
                                                   n_rows=len(TEXTS), add=add, reload=reload):
        counts[kind] += 1
        got = hybrid_snapshot(index)
        want = {}
        for doc_id, (row, meta) in model.items():
            sparse = sorted(encoded.sparse[row].items())
            want[doc_id] = (TEXTS[row], json.dumps(meta), encoded.dense[row].tobytes(),
                            tuple((k, float(np.float32(v))) for k, v in sparse),
                            encoded.colbert[row].astype(np.float32).tobytes())
        assert got == want, f"step {step} ({kind})"
    record_property("iterations", 600)
    record_property("held", f"600/600 steps ({counts['upsert']} upserts, {counts['delete']} "
                            f"deletes, {counts['reload']} save/load) equal to the dict model")


def test_full_disk_while_spilling_colbert_vectors(m3: BGEM3Embedder, encoded: M3Output,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  record_property: Callable[..., None]) -> None:
    """The temporary ColBERT file's disk fills up halfway through an add (the 2nd of 4 vector
    writes fails with ENOSPC, after a partial write of the 1st), then space comes back."""
    index = HybridIndex(m3)
    index.add_embeddings(TEXTS[:3], **outputs(encoded, [0, 1, 2]), ids=["a", "b", "c"])
    before = hybrid_snapshot(index)
    real, calls = os.pwrite, [0]

    def filling_up(fd: int, data: Any, offset: int) -> int:
        calls[0] += 1
        if calls[0] == 1:  # a short write, as a nearly full disk gives
            return real(fd, bytes(data)[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage.os, "pwrite", filling_up)
    with pytest.raises(OSError, match="no room for ColBERT vectors.*index is unchanged"):
        index.add_embeddings(TEXTS[3:7], **outputs(encoded, [3, 4, 5, 6]),
                             ids=["a", "d", "e", "f"])
    assert hybrid_snapshot(index) == before
    monkeypatch.undo()
    index.add_embeddings(TEXTS[3:7], **outputs(encoded, [3, 4, 5, 6]), ids=["a", "d", "e", "f"])
    got = hybrid_snapshot(index)
    for doc_id, row in zip(["a", "d", "e", "f", "b", "c"], [3, 4, 5, 6, 1, 2], strict=False):
        assert got[doc_id][4] == encoded.colbert[row].tobytes(), doc_id  # no misalignment
    record_property("held", "OSError naming the temp file's disk; index unchanged; the next "
                            "add's ColBERT vectors are the right ones")
