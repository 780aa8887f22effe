"""Cross-request batching (core/batcher.py): shared rounds, same outputs, fairness, cancel."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor

import numpy as np
import pytest

from bge_integrations import BGEEmbedder, BGEM3Embedder
from bge_integrations.core.batcher import Batcher, TooManyTokensError, call_scope

TEXTS = [f"text number {i} " + "word " * (i % 7) for i in range(40)]


@pytest.fixture()
def shared(tiny_bert: str):
    emb = BGEEmbedder(tiny_bert, device="cpu")
    batcher = emb.share_batches(max_wait_ms=20)
    yield emb, batcher
    batcher.close()


def test_concurrent_calls_share_rounds_and_match_direct_calls(shared, bert_embedder) -> None:
    emb, batcher = shared
    calls = [(i % 2 == 0, TEXTS[i:i + 3]) for i in range(0, 40, 3)]

    def one(call: tuple[bool, list[str]]) -> np.ndarray:
        query, texts = call
        return emb.encode_queries(texts) if query else emb.encode_documents(texts)

    with ThreadPoolExecutor(len(calls)) as pool:
        got = list(pool.map(one, calls))
    for (query, texts), out in zip(calls, got, strict=False):
        want = (bert_embedder.encode_queries(texts) if query
                else bert_embedder.encode_documents(texts))
        np.testing.assert_allclose(out, want, atol=1e-6)
    assert batcher.rounds < len(calls)  # queries and documents rode in shared rounds


def test_m3_outputs_through_the_batcher(tiny_m3: str, m3) -> None:
    shared_m3 = BGEM3Embedder(tiny_m3, device="cpu")
    batcher = shared_m3.share_batches(max_wait_ms=5)
    try:
        with ThreadPoolExecutor(4) as pool:
            dense = pool.submit(shared_m3.encode_documents, TEXTS[:5], sparse=False)
            full = pool.submit(shared_m3.encode_queries, TEXTS[5:9], colbert=True)
        want = m3.encode_queries(TEXTS[5:9], colbert=True)
        got = full.result()
        np.testing.assert_allclose(dense.result().dense, m3.encode_documents(TEXTS[:5]).dense,
                                   atol=1e-6)
        np.testing.assert_allclose(got.dense, want.dense, atol=1e-6)
        for a, b in zip(got.sparse, want.sparse, strict=False):
            assert a.keys() == b.keys()
            np.testing.assert_allclose(list(a.values()), list(b.values()), atol=1e-6)
        for a, b in zip(got.colbert, want.colbert, strict=False):
            np.testing.assert_allclose(a, b, atol=1e-6)
    finally:
        batcher.close()


#: 40 texts of 16 tokens: 640 tokens
LONG_IDS = [[2] + [5 + i] * 14 + [3] for i in range(40)]


def long_then_short(batcher: Batcher, engine, head) -> tuple[list, list[str], list[int]]:  # noqa: ANN001
    """Queue LONG_IDS, then a 3-token job, holding the first round until both are queued.

    Returns the long job's rows, the order the jobs finished in, and each round's tokens."""
    gate = threading.Event()
    finished: list[str] = []
    sizes: list[int] = []
    real_run = engine.run

    def gated_run(ids, head, **kw):
        gate.wait(5)
        sizes.append(sum(len(r) for r in ids))
        return real_run(ids, head, **kw)

    engine.run = gated_run
    try:
        long_job = batcher.submit(LONG_IDS, head, first_token_only=True)
        long_job.future.add_done_callback(lambda _: finished.append("long"))
        short_job = batcher.submit([[2, 50, 3]], head, first_token_only=True)
        short_job.future.add_done_callback(lambda _: finished.append("short"))
        gate.set()
        rows = long_job.future.result(10)
        short_job.future.result(10)
    finally:
        del engine.run
        batcher.close()
    return rows, finished, sizes


def test_a_long_request_does_not_hold_a_short_one_beyond_a_round(bert_embedder) -> None:
    engine = bert_embedder._engine
    head = bert_embedder._dense_head
    batcher = Batcher(engine, max_wait_ms=0, round_tokens=64, max_round_tokens=64)
    rows, finished, _ = long_then_short(batcher, engine, head)  # 640 tokens: 10 rounds
    assert finished == ["short", "long"]
    assert batcher.rounds >= 10
    want = engine.run(LONG_IDS[-1:], head, first_token_only=True)[0]
    assert len(rows) == 40
    np.testing.assert_allclose(rows[-1], want, atol=1e-6)


def test_rounds_grow_to_half_of_a_deep_queue(bert_embedder) -> None:
    """With 640 tokens queued and round_tokens=64, a round takes half of the queue (up to
    4 x 64), so the long job runs in fewer, fuller rounds; a short job queued behind it still
    finishes first, after one round; every row equals the engine's own."""
    engine = bert_embedder._engine
    head = bert_embedder._dense_head
    batcher = Batcher(engine, max_wait_ms=0, round_tokens=64)
    assert batcher.max_round_tokens == 4 * 64
    rows, finished, sizes = long_then_short(batcher, engine, head)
    assert finished == ["short", "long"]
    # half of the queue, in whole 16-token texts, at most 4 x 64: 643 -> 256; 387 -> 176 + the
    # short job's 3; 208 -> 96; 112 -> 64; the last 48
    assert sizes == [256, 179, 96, 64, 48], sizes
    np.testing.assert_allclose(rows, engine.run(LONG_IDS, head, first_token_only=True),
                               atol=1e-6)


def test_cancelled_job_leaves_nothing_queued(bert_embedder) -> None:
    engine = bert_embedder._engine
    batcher = Batcher(engine, max_wait_ms=0, round_tokens=16)
    gate = threading.Event()
    real_run = engine.run
    seen: list[int] = []

    def counting_run(ids, head, **kw):
        gate.wait(5)
        seen.append(len(ids))
        return real_run(ids, head, **kw)

    engine.run = counting_run
    try:
        first = batcher.submit([[2, 5, 3]], bert_embedder._dense_head)
        doomed = batcher.submit([[2, 7, 3]] * 50, bert_embedder._dense_head)
        doomed.cancel()
        gate.set()
        first.future.result(10)
        batcher.close()
    finally:
        del engine.run
    with pytest.raises(CancelledError):
        doomed.future.result()
    assert sum(seen) <= 1 + 5  # at most the round that had started holds doomed texts


def test_call_scope_counts_tokens_and_cancels_a_blocking_call(tiny_bert: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu")
    batcher = emb.share_batches(max_wait_ms=0)
    gate = threading.Event()
    real_run = emb._engine.run
    emb._engine.run = lambda ids, head, **kw: (gate.wait(5), real_run(ids, head, **kw))[1]
    errors: list[BaseException] = []
    scope_holder: list = []

    def call() -> None:
        with call_scope() as scope:
            scope_holder.append(scope)
            try:
                emb.encode_documents(TEXTS[:3])
            except CancelledError as exc:
                errors.append(exc)

    first = batcher.submit([[2, 5, 3]], emb._dense_head, first_token_only=True)
    thread = threading.Thread(target=call)
    thread.start()
    while not scope_holder or not scope_holder[0]._jobs:  # its job is queued
        threading.Event().wait(0.01)
    scope_holder[0].cancel()
    thread.join(5)
    gate.set()
    first.future.result(5)
    with call_scope() as counted:
        emb.encode_documents(TEXTS[:2])
    batcher.close()
    del emb._engine.run
    assert len(errors) == 1 and not thread.is_alive()
    assert counted.tokens == sum(len(r) for r in emb._tokenize(TEXTS[:2], 512))


def test_limits_and_errors(bert_embedder) -> None:
    batcher = Batcher(bert_embedder._engine, max_tokens_per_call=10)
    try:
        with pytest.raises(TooManyTokensError, match="max_tokens_per_call=10"):
            batcher.run([[2] + [5] * 10 + [3]], bert_embedder._dense_head)
        with pytest.raises(ValueError, match="zero tokens"):
            batcher.run([[]], bert_embedder._dense_head)
        assert batcher.run([], bert_embedder._dense_head) == []

        def broken(*_):
            raise RuntimeError("head failed")

        with pytest.raises(RuntimeError, match="head failed"):
            batcher.run([[2, 5, 3]], broken)
        assert len(batcher.run([[2, 5, 3]], bert_embedder._dense_head)) == 1
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit([[2, 5, 3]], bert_embedder._dense_head)
    with pytest.raises(ValueError, match="max_wait_ms"):
        Batcher(bert_embedder._engine, max_wait_ms=-1)
    with pytest.raises(ValueError, match="round_tokens"):
        Batcher(bert_embedder._engine, round_tokens=0)
    with pytest.raises(ValueError, match="max_round_tokens"):
        Batcher(bert_embedder._engine, round_tokens=64, max_round_tokens=32)
