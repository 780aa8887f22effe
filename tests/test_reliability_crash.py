"""Crash safety of HybridIndex.save and detection of damaged files.

A fork server (one subprocess that imports torch and loads the model once) forks a worker
per iteration; the worker loads the index directory, applies deterministic steps and saves
after each one, writing ``begin n`` / ``done n`` to a log with unbuffered ``os.write``. The
worker is SIGKILLed either after a random delay or, to hit every step of a save, by an audit
hook just before its k-th disk-changing call. Afterwards ``HybridIndex.load`` must return
exactly the state of the last completed save: the last ``done``, or the save whose
``done`` the kill cut off (its manifest switch had happened).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pytest
import torch
from helpers import CORPUS, QUERIES

from bge_integrations import BGEM3Embedder, Hit, HybridIndex
from bge_integrations.retrieval import IndexFileError, ModelMismatchError
from bge_integrations.retrieval.persistence import LOCK_FILE, MANIFEST

pytestmark = [pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL"),
              pytest.mark.usefixtures("one_torch_thread")]

#: audit events of file-system calls that change the disk (``open`` only when it can write);
#: in between, a save only writes into the files it opened, so killing it before each call
#: reaches every state it can leave at a call boundary (random kills also land mid-write)
FS_EVENTS = frozenset({"open", "os.rename", "os.remove", "os.rmdir", "os.mkdir",
                       "shutil.rmtree", "os.truncate"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
#: documents kept live: older ones are deleted, so every save has about the same size
WINDOW = 12
RANDOM_KILLS = 20
MAX_DELAY_S = 0.3


# -- the deterministic workload ------------------------------------------------------------
def step_ops(n: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Step ``n``: add ``d{n}``, upsert ``d{n-1}`` every 4th step, delete ``d{n-WINDOW}``."""
    ops = [("add", f"d{n}", f"{CORPUS[n % len(CORPUS)]} (document {n})",
            {"n": n, "tags": ["x", n % 5]})]
    if n % 4 == 0 and n > 1:
        ops.append(("add", f"d{n - 1}", f"{CORPUS[(n + 7) % len(CORPUS)]} (revised at {n})",
                    {"n": n - 1, "rev": n}))
    if n > WINDOW:
        ops.append(("delete", f"d{n - WINDOW}", "", {}))
    return ops


def apply_step(index: HybridIndex, n: int) -> None:
    for kind, doc_id, text, meta in step_ops(n):
        if kind == "add":
            index.add([text], metadatas=[meta], ids=[doc_id])
        else:
            index.delete([doc_id])


def expected_docs(n: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """The documents after steps 1..n."""
    docs: dict[str, tuple[str, dict[str, Any]]] = {}
    for step in range(1, n + 1):
        for kind, doc_id, text, meta in step_ops(step):
            if kind == "add":
                docs[doc_id] = (text, meta)
            else:
                docs.pop(doc_id, None)
    return docs


# -- the fork server (runs in the subprocess) -----------------------------------------------
def _changes_disk(event: str, args: tuple) -> bool:
    if event != "open":
        return event in FS_EVENTS
    _, mode, flags = args
    return bool(set(mode or "") & set("wax+")) if mode is not None else bool(
        flags & _WRITE_FLAGS)


def _arm(crash_at: int) -> list[int]:
    """SIGKILL this process just before its ``crash_at``-th disk-changing call from now on.

    Returns the running count of those calls.
    """
    calls = [0]

    def hook(event: str, args: tuple) -> None:
        if _changes_disk(event, args):
            calls[0] += 1
            if calls[0] == crash_at:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    return calls


def _work(m3: BGEM3Embedder, cmd: dict[str, Any]) -> None:
    fd = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    directory = Path(cmd["dir"])
    index = HybridIndex.load(directory, m3) if cmd["start"] else HybridIndex(m3)
    for n in range(cmd["start"] + 1, cmd["start"] + cmd["steps"] + 1):
        apply_step(index, n)
        os.write(fd, f"begin {n}\n".encode())
        calls = _arm(cmd["crash_at"]) if cmd["crash_at"] else None
        index.save(directory)
        os.write(fd, f"done {n}\n".encode())
        if calls:
            os.write(fd, f"calls {calls[0]}\n".encode())


def serve(model_dir: str) -> None:
    """Fork-server loop: one JSON command per stdin line, one JSON exit status per stdout line.

    A command is ``{"dir", "log", "start", "steps", "crash_at", "kill_after"}``: the worker
    loads ``dir`` (when ``start`` > 0) and runs steps ``start+1 ..``; the server SIGKILLs it
    after ``kill_after`` seconds unless that is null.
    """
    torch.set_num_threads(1)  # no thread pool exists at fork time
    m3 = BGEM3Embedder(model_dir, device="cpu")
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.dup2(2, 1)  # stdout carries the protocol: the worker writes to stderr only
            code = 0
            try:
                _work(m3, cmd)
            except BaseException:  # noqa: BLE001 - reported to the test through stderr
                traceback.print_exc()
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        if cmd["kill_after"] is not None:
            time.sleep(cmd["kill_after"])
            os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still this worker
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        print(json.dumps({"killed": killed, "code": os.waitstatus_to_exitcode(status)}),
              flush=True)


# -- the test side -------------------------------------------------------------------------
class ForkServer:
    """The subprocess running :func:`serve`, and the log of the current worker."""

    def __init__(self, model_dir: str, tmp: Path) -> None:
        self.stderr_path = tmp / "server.stderr"
        self._stderr: TextIO = self.stderr_path.open("w")
        code = ("import sys; sys.path.insert(0, sys.argv[1]); "
                "import test_reliability_crash as t; t.serve(sys.argv[2])")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(Path(__file__).parent), model_dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env=env)
        self.log = tmp / "worker.log"
        assert self._readline() == "ready"

    def _readline(self) -> str:
        line = self.proc.stdout.readline().strip()
        if not line:
            self.proc.wait(timeout=10)
            pytest.fail(f"fork server died:\n{self.stderr_path.read_text()[-3000:]}")
        return line

    def run(self, directory: Path, start: int, *, steps: int = 1, crash_at: int | None = None,
            kill_after: float | None = None
            ) -> tuple[dict[str, Any], list[int], list[int], list[int]]:
        """One worker: its exit status, the steps it began and finished saving, and (with
        ``crash_at``) the disk-changing calls its save made when the kill did not fire."""
        self.log.write_text("")
        cmd = {"dir": str(directory), "log": str(self.log), "start": start, "steps": steps,
               "crash_at": crash_at, "kill_after": kill_after}
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        status = json.loads(self._readline())
        if not status["killed"] and status["code"] != 0:
            pytest.fail(f"worker failed:\n{self.stderr_path.read_text()[-3000:]}")
        marks = [line.split() for line in self.log.read_text().splitlines()]
        return status, *([int(n) for kind, n in marks if kind == want]
                         for want in ("begin", "done", "calls"))

    def close(self) -> None:
        self.proc.kill()  # idle between commands: nothing to finish
        self.proc.wait(timeout=30)
        self._stderr.close()


@pytest.fixture(scope="module")
def server(m3x: BGEM3Embedder,  # noqa: F811
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    srv = ForkServer(m3x.model_name, tmp_path_factory.mktemp("fork-server"))
    yield srv
    srv.close()


class Reference:
    """The expected index after ``n`` steps, built serially in this process (cached)."""

    def __init__(self, m3: BGEM3Embedder) -> None:
        self.m3 = m3
        self._results: dict[int, list[list[Hit]]] = {}

    def results(self, n: int) -> list[list[Hit]]:
        if n not in self._results:
            index = HybridIndex(self.m3)
            docs = expected_docs(n)
            if docs:
                index.add([t for t, _ in docs.values()], metadatas=[m for _, m in docs.values()],
                          ids=list(docs))
            self._results[n] = search_all(index)
        return self._results[n]

    def check(self, directory: Path, allowed: set[int]) -> int:
        """Load ``directory``; assert it holds the state after one of ``allowed`` steps."""
        if not (directory / MANIFEST).exists():
            assert 0 in allowed, f"no saved index, but steps {allowed} were saved"
            with pytest.raises(IndexFileError, match="holds no saved index"):
                HybridIndex.load(directory, self.m3)
            return 0
        loaded = HybridIndex.load(directory, self.m3)
        universe = [f"d{i}" for i in range(1, max(allowed) + 2)]
        records = {r.id: (r.text, r.metadata) for r in loaded.get(universe)}
        matches = [n for n in sorted(allowed) if records == expected_docs(n)]
        assert matches, f"on disk: {sorted(records)}; none of the states after steps {allowed}"
        n = matches[-1]
        assert len(loaded) == len(records)
        assert_same_results(search_all(loaded), self.results(n))
        return n


def search_all(index: HybridIndex) -> list[list[Hit]]:
    """Hybrid hits of every query; each hit carries its dense, sparse and ColBERT scores."""
    return index.search_many(QUERIES, k=5)


def assert_same_results(got: list[list[Hit]], want: list[list[Hit]]) -> None:
    for a, b in zip(got, want, strict=True):
        assert [(h.id, h.text, h.metadata) for h in a] == [(h.id, h.text, h.metadata) for h in b]
        for x, y in zip(a, b, strict=False):
            assert x.scores == pytest.approx(y.scores, rel=1e-5, abs=1e-6)
            assert x.score == pytest.approx(y.score, rel=1e-5, abs=1e-6)


def count_fs_calls(server: ForkServer, tmp: Path, start: int) -> int:
    """Disk-changing calls of one complete save after ``start`` saved steps."""
    directory = tmp / "count"
    if start:
        server.run(directory, 0, steps=start)
    _, _, _, calls = server.run(directory, start, crash_at=10**9)
    return calls[0]


def debris(directory: Path) -> list[str]:
    """Entries that are neither the manifest, the lock file, nor the generation it names."""
    if not directory.exists():
        return []
    manifest = directory / MANIFEST
    current = json.loads(manifest.read_text())["generation"] if manifest.exists() else None
    return sorted(p.name for p in directory.iterdir()
                  if p.name not in (MANIFEST, LOCK_FILE, current))


@pytest.mark.parametrize("first_save", [True, False], ids=["first-save", "later-save"])
def test_kill_before_every_disk_change_of_a_save(
        server: ForkServer, m3x: BGEM3Embedder,  # noqa: F811
        tmp_path: Path, first_save: bool, record_property: Callable) -> None:
    """SIGKILL a save just before each of its disk-changing calls in turn (mkdir, open for writing,
    rename, remove, rmtree, ...): the first save of a new directory, or a save over an existing one.

    Checks after every kill, all in one directory: load returns exactly the last completed
    save (before any, a clear "holds no saved index" error), and the next worker loads what is
    there, continues and saves over the debris of the killed one.
    """
    start = 0 if first_save else 5
    calls = count_fs_calls(server, tmp_path, start)
    reference = Reference(m3x)
    directory = tmp_path / "index"
    n = 0
    if start:
        server.run(directory, 0, steps=start)
        n = reference.check(directory, {start})
    left = 0
    for k in range(1, calls + 1):
        status, begun, done, _ = server.run(directory, n, crash_at=k)
        assert status["killed"] and not done
        n = reference.check(directory, {n, *begun})
        left = max(left, len(debris(directory)))
    record_property("iterations", calls)
    status, _, done, _ = server.run(directory, n)
    assert not status["killed"] and done == [n + 1]
    assert reference.check(directory, {n + 1}) == n + 1
    record_property("held", (
        f"{calls}/{calls} kill points: load == last completed save, every next save "
        f"succeeded; up to {left} leftover entries stayed in the directory"))


def test_killed_saves_leave_no_debris(server: ForkServer, m3x: BGEM3Embedder,  # noqa: F811
                                      tmp_path: Path, record_property: Callable) -> None:
    """SIGKILL 5 saves over an existing index at different points, then save once more without a
    kill.

    Checks: the directory holds only the manifest and the generation it names (killed saves
    must not leak a copy of the index each).
    """
    calls = count_fs_calls(server, tmp_path, 3)
    directory = tmp_path / "index"
    server.run(directory, 0, steps=3)
    n = 3
    for k in np.linspace(3, calls - 6, 5).astype(int).tolist():
        _, _, done, _ = server.run(directory, n, crash_at=k)
        n = done[-1] if done else n
    assert debris(directory), "no kill point left anything behind: pick others"
    server.run(directory, n)
    assert debris(directory) == [], "killed saves left these behind"
    record_property("iterations", 5)
    record_property("held", "the directory held only the manifest and its generation")


def test_random_sigkill_during_repeated_saves(server: ForkServer, m3x: BGEM3Embedder,  # noqa: F811
                                             tmp_path: Path, record_property: Callable) -> None:
    """A worker adds, upserts and deletes documents and saves after each step; it is SIGKILLed after
    a random delay (0-0.3 s), and the next worker continues from what is on disk.

    Checks after every kill: load returns exactly the last completed save (the last ``done``
    mark, or the save whose mark the kill cut off), with the same search results as the
    same documents indexed from scratch.
    """
    rng = random.Random(1234)
    directory = tmp_path / "index"
    reference = Reference(m3x)
    n = 0
    mid_save = cut_marks = 0
    for _ in range(RANDOM_KILLS):
        status, begun, done, _ = server.run(directory, n, steps=100,
                                         kill_after=rng.uniform(0, MAX_DELAY_S))
        assert status["killed"], "the worker finished 100 saves before the kill"
        last_done = done[-1] if done else n
        unfinished = [b for b in begun if b > last_done]
        mid_save += bool(unfinished)
        on_disk = reference.check(directory, {last_done, *unfinished})
        cut_marks += on_disk != last_done
        n = on_disk
    record_property("iterations", RANDOM_KILLS)
    record_property("held", (
        f"{RANDOM_KILLS}/{RANDOM_KILLS} kills ({mid_save} mid-save, {cut_marks} after the "
        f"manifest switch but before the mark; {n} saves completed): load == last completed "
        "save, same search results"))


# -- damaged files ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_index(m3x: BGEM3Embedder,  # noqa: F811
                tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HybridIndex]:
    index = HybridIndex(m3x, candidates=7, rrf_k=30)
    docs = expected_docs(20)
    index.add([t for t, _ in docs.values()], metadatas=[m for _, m in docs.values()],
              ids=list(docs))
    path = tmp_path_factory.mktemp("damaged") / "index"
    index.save(path)
    return path, index


def index_view(index: HybridIndex) -> tuple:
    """Everything a user can observe: config, records and results in every mode and fusion."""
    ids = list(expected_docs(20))
    results = [index.search_many(QUERIES, k=5, mode=mode)
               for mode in ("dense", "sparse", "colbert", "hybrid")]
    results.append(index.search_many(QUERIES, k=5, fusion="rrf"))
    hits = [[(h.id, h.text, h.metadata, round(h.score, 5)) for h in q] for r in results for q in r]
    return (index.candidates, index.rrf_k, index.store_colbert, index.colbert_dtype,
            len(index), index.get(ids), hits)


def data_files(path: Path) -> list[Path]:
    generation = json.loads((path / MANIFEST).read_text())["generation"]
    return [path / MANIFEST, *sorted((path / generation).iterdir())]


def test_random_bit_flips_and_truncations_are_detected_or_harmless(
        saved_index: tuple[Path, HybridIndex], m3x: BGEM3Embedder,  # noqa: F811
        record_property: Callable) -> None:
    """Flip one random bit (40 per file, manifest included), truncate a file at a random length (5
    per file) or delete it, then load.

    Checks: load raises IndexFileError / ModelMismatchError, or returns an index whose
    config, records and search results (every mode, weighted and RRF) equal the original:
    damage never gives different results.
    """
    path, original = saved_index
    want = index_view(original)
    rng = random.Random(99)
    detected = harmless = 0
    for file in data_files(path):
        data = file.read_bytes()
        damaged = []
        for _ in range(40):
            pos = rng.randrange(len(data))
            flipped = bytearray(data)
            flipped[pos] ^= 1 << rng.randrange(8)
            damaged.append(bytes(flipped))
        damaged += [data[:rng.randrange(len(data))] for _ in range(5)]
        for content in [*damaged, None]:
            if content is None:
                file.unlink()
            else:
                file.write_bytes(content)
            try:
                loaded = HybridIndex.load(path, m3x)
            except (IndexFileError, ModelMismatchError):
                detected += 1
            else:
                assert index_view(loaded) == want, f"damage in {file.name} changed results"
                harmless += 1
        file.write_bytes(data)
    tries = detected + harmless
    record_property("iterations", tries)
    record_property("held", f"{detected}/{tries} detected with a clear error, {harmless} loaded "
                            "with identical config and results (e.g. a probe digit changed)")


def test_bit_flips_in_the_manifest_config_are_detected_or_harmless(
        saved_index: tuple[Path, HybridIndex], m3x: BGEM3Embedder) -> None:  # noqa: F811
    """Flip every bit of the digits of config.candidates and config.rrf_k in manifest.json, then
    load.

    Checks: load raises, or returns an index with the original config and results.
    """
    path, original = saved_index
    want = index_view(original)
    manifest = path / MANIFEST
    data = manifest.read_bytes()
    digits = [pos for match in re.finditer(rb'"(candidates|rrf_k)": (\d+)', data)
              for pos in range(match.start(2), match.end(2))]
    try:
        for pos in digits:
            for bit in range(8):
                flipped = bytearray(data)
                flipped[pos] ^= 1 << bit
                manifest.write_bytes(bytes(flipped))
                try:
                    loaded = HybridIndex.load(path, m3x)
                except (IndexFileError, ModelMismatchError):
                    continue
                assert index_view(loaded) == want, f"byte {pos} bit {bit} changed the index"
    finally:
        manifest.write_bytes(data)
