"""Which batch runs where: one length-sorted queue of texts, drained by workers side by side.

Every worker owns a model replica: a share of the CPU's threads (several workers on one CPU
model) or a GPU of its own (one worker per device). Each takes the next token-budget batch
from the shared queue when it is free, so a fast device does more of the work. A GPU
out-of-memory error halves that worker's budget and re-splits the failed batch; any other
error stops every worker and reaches the caller. Workers are threads, not processes: nothing
is pickled, a failure cannot leave a pool hanging, and outputs land in input order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

__all__ = ["BatchQueue", "drain"]

#: (replica, positions of the texts of one batch) -> one result per text
Forward = Callable[[Any, np.ndarray], Sequence[Any]]
#: (positions, results) for every finished batch
Done = Callable[[np.ndarray, Sequence[Any]], None]


class BatchQueue:
    """Text positions longest first, handed out in batches of at most ``budget`` padded tokens.

    Args:
        lengths: token count of every text.
        batch_size: most texts in one batch.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self._order = np.argsort(-lengths, kind="stable")
        self._pos = 0
        self._lock = threading.Lock()
        self._stopped = False

    def fit(self, positions: np.ndarray, budget: int) -> int:
        """How many of ``positions`` (longest first) make one batch within ``budget``."""
        longest = int(self.lengths[positions[0]])
        return max(1, min(self.batch_size, budget // longest, len(positions)))

    def take(self, budget: int) -> np.ndarray | None:
        """The next batch, or None when every text is handed out (or the queue was stopped)."""
        with self._lock:
            if self._stopped or self._pos >= len(self._order):
                return None
            rest = self._order[self._pos:]
            size = self.fit(rest, budget)
            self._pos += size
            return rest[:size]

    def stop(self) -> None:
        """Hand out nothing more (a worker failed)."""
        with self._lock:
            self._stopped = True


def drain(queue: BatchQueue, replicas: Sequence[Any], forward: Forward, done: Done,
          budget: int, cpu_threads: int | None = None) -> None:
    """Run every batch of ``queue`` on one worker per entry of ``replicas``.

    One replica runs in the calling thread. Several run in threads; ``cpu_threads`` is then
    the torch thread count each CPU worker uses (the caller's own setting is left as it was).
    The first error stops the queue and is raised once every worker has finished its batch.
    """
    if len(replicas) == 1:
        _work(queue, replicas[0], forward, done, budget)
        return
    caller_threads = torch.get_num_threads()

    def worker(replica: Any) -> None:
        if cpu_threads is not None and replica.device.type == "cpu":
            # get_num_threads() first: it runs torch's once-per-thread setup, which would
            # otherwise overwrite this setting with the process default on the first op
            torch.get_num_threads()
            torch.set_num_threads(cpu_threads)
        try:
            _work(queue, replica, forward, done, budget)
        except BaseException:
            queue.stop()
            raise

    try:
        with ThreadPoolExecutor(len(replicas), thread_name_prefix="bge-engine") as pool:
            futures = [pool.submit(worker, replica) for replica in replicas]
        for future in futures:
            future.result()
    finally:
        if cpu_threads is not None:
            # set_num_threads in a worker also moved the process-wide default that threads
            # started later inherit: put back the caller's
            torch.set_num_threads(caller_threads)


def _work(queue: BatchQueue, replica: Any, forward: Forward, done: Done, budget: int) -> None:
    leftover: list[np.ndarray] = []  # texts of a batch that ran out of memory, to re-split
    while True:
        if leftover:
            size = queue.fit(leftover[0], budget)
            positions, rest = leftover[0][:size], leftover[0][size:]
            leftover = [rest] if len(rest) else []
        else:
            positions = queue.take(budget)
            if positions is None:
                return
        try:
            out = forward(replica, positions)
        except Exception as exc:
            if not _is_oom(exc) or len(positions) == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            budget = max(1, int(queue.lengths[positions[0]]) * len(positions) // 2)
            leftover = [np.concatenate([positions, *leftover])]
            continue
        done(positions, out)


def _is_oom(exc: BaseException) -> bool:
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    return isinstance(exc, oom_types)
