"""Cross-request batching: concurrent callers' texts share :meth:`Engine.run` calls.

A service gets many small requests at once. Run one by one, each pays for a forward pass of a
few texts; a :class:`Batcher` collects what concurrent callers submit for a few milliseconds
and runs it through ONE ``Engine.run`` call (the one inference loop: length-sorted token-budget
batches), then hands every caller its own rows back, in its own order.

Fairness: one *round* (one ``Engine.run`` call) holds at most ``round_tokens`` tokens, by
default :data:`ROUND_BATCHES` token-budget batches per engine worker. A request larger than
that is served over several rounds, and between two of its rounds every other waiting request
gets its turn, so no request waits for an unrelated long one beyond one round.

Rounds grow with the queue: a round takes half of the queued tokens when that is more than
``round_tokens``, up to ``max_round_tokens`` (by default :data:`ROUND_GROWTH` times
``round_tokens``). The engine length-sorts each round, so fuller rounds pad less at
saturation (STS sentences, MiniLM: 7% more padded tokens than one sorted call with rounds of
4,096 tokens, 2% with 16,384; 200 threads sending 8 sentences each ran 16% slower than one
call with fixed 4,096-token rounds, 12% with rounds of a quarter of the queue, 6% with rounds
of at least 16,384), while a request that arrives behind a queue of ``Q`` tokens waits for at
most ``Q / 2`` of them in one round (FIFO: no longer than the queue ahead takes anyway), and a
long request holds a short one back by at most ``max_round_tokens``.

Cancellation: a caller that gives up (``Job.cancel()``, or ``CallScope.cancel()`` of the
:func:`call_scope` around a blocking call) leaves nothing queued: its texts not yet in a round
are dropped and its caller gets :class:`concurrent.futures.CancelledError`.

Embedders route their engine calls through a batcher with ``share_batches()``; the server does
this for every model it serves.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import CancelledError, Future
from contextlib import contextmanager
from typing import Any

from .engine import Engine, Head

__all__ = ["Batcher", "Job", "TooManyTokensError", "CallScope", "call_scope", "ROUND_BATCHES",
           "ROUND_GROWTH"]

#: default round size in token-budget batches per worker. The engine length-sorts each round,
#: so small rounds pad more: 200 threads sending 8 STS sentences each to MiniLM on 2 cores
#: cost 31% more CPU per text than one big call with rounds of 1 batch per worker, 14% with
#: 4, 10% with 16; 4 keeps a short request's wait behind others to a fraction of a second.
ROUND_BATCHES = 4
#: how many times ``round_tokens`` a round may hold when the queue is deep (see above)
ROUND_GROWTH = 4

_SCOPE: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar(
    "bge_batcher_scope", default=None)


class TooManyTokensError(ValueError):
    """One call holds more tokens than the batcher's ``max_tokens_per_call``."""


class CallScope:
    """What the blocking calls made inside :func:`call_scope` cost, and a way to stop them.

    Attributes:
        tokens: tokens of every call the batcher accepted in this scope (a service's usage).
    """

    def __init__(self) -> None:
        self.tokens = 0
        self._jobs: list[Job] = []
        self._cancelled = False
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Drop this scope's queued texts; its blocked calls raise ``CancelledError``."""
        with self._lock:
            self._cancelled = True
            jobs, self._jobs = self._jobs, []
        for job in jobs:
            job.cancel()

    def _attach(self, job: Job, tokens: int) -> None:
        with self._lock:
            self.tokens += tokens
            if not self._cancelled:
                self._jobs.append(job)
                return
        job.cancel()


@contextmanager
def call_scope(scope: CallScope | None = None) -> Iterator[CallScope]:
    """Blocking :meth:`Batcher.run` calls made in this context report to ``scope``.

    Cancelling the scope (from any thread) drops the calls' queued texts. The context travels
    into ``asyncio.to_thread`` threads (context variables are copied), so an async server can
    count a request's tokens and cancel its embed call when the client goes away.

    Example:
        >>> with call_scope() as scope:  # doctest: +SKIP
        ...     vectors = embedder.encode_documents(texts)  # another thread may scope.cancel()
        >>> scope.tokens  # doctest: +SKIP
        42
    """
    scope = CallScope() if scope is None else scope
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


class Job:
    """One caller's texts in the batcher: results land in :attr:`future` in input order."""

    def __init__(self, token_ids: Sequence[Sequence[int]], key: Hashable, head: Head,
                 first_token_only: bool) -> None:
        self.token_ids = token_ids
        self.key = (key, first_token_only)
        self.head = head
        self.first_token_only = first_token_only
        self.results: list[Any] = [None] * len(token_ids)
        self.next = 0  # first text not yet handed to a round
        self.future: Future[list[Any]] = Future()

    def cancel(self) -> None:
        """Drop the texts not yet run; the caller gets ``CancelledError``."""
        self.future.cancel()


class Batcher:
    """Concurrent callers of one engine share its forward passes.

    Args:
        engine: the engine every round runs on.
        max_wait_ms: how long the first waiting job waits for company before its round starts.
        round_tokens: most tokens in one round while the queue is short (``None``:
            :data:`ROUND_BATCHES` token-budget batches per worker).
        max_round_tokens: most tokens in one round when the queue is deep (``None``:
            :data:`ROUND_GROWTH` x ``round_tokens``; equal to ``round_tokens``: fixed rounds).
        max_tokens_per_call: reject a call holding more tokens than this with
            :class:`TooManyTokensError` (``None``: no limit).

    Example:
        >>> batcher = Batcher(engine, max_wait_ms=2)  # doctest: +SKIP
        >>> rows = batcher.run(token_ids, head)  # same contract as engine.run  # doctest: +SKIP
        >>> batcher.close()  # doctest: +SKIP
    """

    def __init__(self, engine: Engine, *, max_wait_ms: float = 2.0,
                 round_tokens: int | None = None, max_round_tokens: int | None = None,
                 max_tokens_per_call: int | None = None) -> None:
        if not isinstance(max_wait_ms, int | float) or max_wait_ms < 0:
            msg = f"max_wait_ms must be a number >= 0, got {max_wait_ms!r}."
            raise ValueError(msg)
        if round_tokens is None:
            round_tokens = ROUND_BATCHES * engine.max_batch_tokens * engine.workers()
        for name, value in (("round_tokens", round_tokens),
                            ("max_round_tokens", max_round_tokens),
                            ("max_tokens_per_call", max_tokens_per_call)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                msg = f"{name} must be a positive int, got {value!r}."
                raise ValueError(msg)
        if max_round_tokens is None:
            max_round_tokens = ROUND_GROWTH * round_tokens
        if max_round_tokens < round_tokens:
            msg = (f"max_round_tokens ({max_round_tokens}) must be at least round_tokens "
                   f"({round_tokens}).")
            raise ValueError(msg)
        self.engine = engine
        self.max_wait = max_wait_ms / 1000.0
        self.round_tokens = round_tokens
        self.max_round_tokens = max_round_tokens
        self.max_tokens_per_call = max_tokens_per_call
        self.rounds = 0  # Engine.run calls made so far
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="bge-batcher", daemon=True)
        self._thread.start()

    # -- callers -----------------------------------------------------------------------------
    def submit(self, token_ids: Sequence[Sequence[int]], head: Head, *,
               first_token_only: bool = False, key: Hashable | None = None) -> Job:
        """Queue texts; their rows arrive in ``job.future``.

        Jobs share a round when their ``key`` (default: the head itself, so bound methods of
        one embedder match) and ``first_token_only`` are equal.
        """
        if any(len(row) == 0 for row in token_ids):
            msg = "A text tokenized to zero tokens; the tokenizer adds no special tokens."
            raise ValueError(msg)
        total = sum(len(row) for row in token_ids)
        if self.max_tokens_per_call is not None and total > self.max_tokens_per_call:
            msg = (f"This call holds {total} tokens, over max_tokens_per_call="
                   f"{self.max_tokens_per_call}; split the input or raise the limit.")
            raise TooManyTokensError(msg)
        job = Job(token_ids, head if key is None else key, head, first_token_only)
        if not token_ids:
            job.future.set_result([])
            return job
        with self._cond:
            if self._closed:
                msg = "this Batcher is closed; it accepts no more work."
                raise RuntimeError(msg)
            self._jobs.append(job)
            self._cond.notify()
        return job

    def run(self, token_ids: Sequence[Sequence[int]], head: Head, *,
            first_token_only: bool = False, key: Hashable | None = None) -> list[Any]:
        """:meth:`Engine.run`'s contract, sharing rounds with concurrent callers (blocking).

        Inside :func:`call_scope` the call's tokens are counted there, and cancelling the
        scope drops its queued texts and raises ``CancelledError``.
        """
        scope = _SCOPE.get()
        if scope is not None and scope.cancelled:
            raise CancelledError
        job = self.submit(token_ids, head, first_token_only=first_token_only, key=key)
        if scope is not None:
            scope._attach(job, sum(len(row) for row in token_ids))
        return job.future.result()

    def close(self) -> None:
        """Finish every queued job, then stop the batcher's thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    # -- the batcher's thread ----------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                deadline = time.monotonic() + self.max_wait
                while not self._closed and self._queued_tokens() < self.round_tokens:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                parts = self._take_round()
            if parts:
                self._run_round(parts)

    def _queued_tokens(self) -> int:
        return sum(sum(len(r) for r in job.token_ids[job.next:]) for job in self._jobs)

    def _take_round(self) -> list[tuple[Job, int, int]]:
        """``(job, start, stop)`` slices of the jobs sharing the first job's key, in queue
        order, within this round's budget (at least one text); served jobs leave the queue and
        partly served ones go to its back (under the condition's lock)."""
        parts: list[tuple[Job, int, int]] = []
        budget = min(self.max_round_tokens, max(self.round_tokens, self._queued_tokens() // 2))
        key = None
        for job in list(self._jobs):
            if job.future.cancelled():
                self._jobs.remove(job)
                continue
            if key is None:
                key = job.key
            if job.key != key or (budget <= 0 and parts):
                continue
            start = stop = job.next
            while stop < len(job.token_ids) and (stop == start and not parts
                                                 or len(job.token_ids[stop]) <= budget):
                budget -= len(job.token_ids[stop])
                stop += 1
            if stop == start:
                continue
            job.next = stop
            parts.append((job, start, stop))
            self._jobs.remove(job)
            if stop < len(job.token_ids):
                self._jobs.append(job)
        return parts

    def _run_round(self, parts: list[tuple[Job, int, int]]) -> None:
        ids = [row for job, start, stop in parts for row in job.token_ids[start:stop]]
        first = parts[0][0]
        try:
            rows = self.engine.run(ids, first.head, first_token_only=first.first_token_only)
        except BaseException as exc:  # noqa: BLE001 - every job of the round gets the error
            for job, _, _ in parts:
                self._fail(job, exc)
            return
        finally:
            self.rounds += 1
        offset = 0
        for job, start, stop in parts:
            job.results[start:stop] = rows[offset:offset + stop - start]
            offset += stop - start
            if stop == len(job.token_ids) and not job.future.done():
                job.future.set_result(job.results)

    def _fail(self, job: Job, exc: BaseException) -> None:
        with self._cond:
            if job in self._jobs:
                self._jobs.remove(job)
        if not job.future.done():
            job.future.set_exception(exc)
