"""Resource bounds: per-call limits give clear errors before any work, every forward pass stays
within its budget, and GPU out-of-memory falls back to smaller batches without losing or
reordering outputs (simulated: ``Engine.forward`` raises ``torch.OutOfMemoryError`` above a
batch size).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from helpers import CORPUS, QUERIES

from bge_integrations import BGEEmbedder, BGEM3Embedder, HybridIndex
from bge_integrations.core.engine import Engine

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is faster

#: batches above this many texts "run out of GPU memory"
OOM_ABOVE = 3
TEXTS = [f"{CORPUS[i % len(CORPUS)]} " * (1 + i % 4) + f"#{i}" for i in range(23)]


class ForwardSpy:
    """Replaces ``Engine.forward``: records each batch, fails the ones ``fail`` picks."""

    def __init__(self, fail: Callable[[int], BaseException | None], forward: Callable) -> None:
        self.fail = fail
        self.attempts: list[int] = []
        self.succeeded: list[int] = []
        self.padded_tokens: list[int] = []
        self._forward = forward

    def __call__(self, engine: Engine, rows: Sequence[Sequence[int]], head: Any,
                 **options: Any) -> Any:
        self.attempts.append(len(rows))
        error = self.fail(len(rows))
        if error is not None:
            raise error
        self.padded_tokens.append(len(rows) * max(len(r) for r in rows))
        out = self._forward(engine, rows, head, **options)
        self.succeeded.append(len(rows))
        return out


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Callable[..., ForwardSpy]:
    """``spy(fail)`` installs a :class:`ForwardSpy` (replacing the previous one); batches then
    run one after the other, as on a GPU."""
    original = Engine.forward

    def install(fail: Callable[[int], BaseException | None] = lambda n: None) -> ForwardSpy:
        forward_spy = ForwardSpy(fail, original)

        def forward(engine: Engine, rows: Sequence[Sequence[int]], head: Any,
                    **options: Any) -> Any:
            return forward_spy(engine, rows, head, **options)

        monkeypatch.setattr(Engine, "forward", forward)
        # batches in turn, as on a GPU (the only place out-of-memory errors are retried)
        monkeypatch.setattr(Engine, "workers", lambda engine: 1)
        return forward_spy

    return install


def oom_above(limit: int) -> Callable[[int], BaseException | None]:
    """Fail batches of more than ``limit`` texts with a simulated GPU out-of-memory error."""

    def fail(n: int) -> BaseException | None:
        return torch.OutOfMemoryError(f"CUDA out of memory (simulated, {n} texts)") if (
            n > limit) else None

    return fail


def assert_same_m3(got: Any, want: Any) -> None:
    np.testing.assert_allclose(got.dense, want.dense, rtol=1e-5, atol=1e-6)
    for a, b in zip(got.sparse, want.sparse, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[t] for t in b], list(b.values()), rtol=1e-5, atol=1e-6)
    for a, b in zip(got.colbert, want.colbert, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["dense", "m3"])
def test_oom_backoff_keeps_every_output_in_order(kind: str, tiny_bert: str,
                                                 m3x: BGEM3Embedder,  # noqa: F811
                                                 spy: Callable[..., ForwardSpy],
                                                 record_property: Callable) -> None:
    """Encode 23 texts of mixed lengths while every forward pass of more than 3 texts raises
    torch.OutOfMemoryError (BGEEmbedder queries; BGE-M3 dense + sparse + ColBERT documents).

    Checks: the outputs equal the run without OOM (1e-5) in input order; batches were
    retried smaller and each text was embedded exactly once.
    """
    if kind == "dense":
        dense = BGEEmbedder(tiny_bert, device="cpu")
        want = dense.encode_queries(TEXTS)
        oom = spy(oom_above(OOM_ABOVE))
        np.testing.assert_allclose(dense.encode_queries(TEXTS), want, rtol=1e-5, atol=1e-6)
    else:
        want = m3x.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)
        oom = spy(oom_above(OOM_ABOVE))
        assert_same_m3(m3x.encode_documents(TEXTS, dense=True, sparse=True, colbert=True), want)
    failed = len(oom.attempts) - len(oom.succeeded)
    assert oom.attempts[0] > OOM_ABOVE and failed >= 1
    assert max(oom.succeeded) <= OOM_ABOVE and sum(oom.succeeded) == len(TEXTS)
    record_property("iterations", len(oom.succeeded) + failed)
    record_property("held", (
        f"{failed} simulated OOMs, then {len(oom.succeeded)} batches of <= {OOM_ABOVE}: "
        "outputs == no-OOM run, same order, each text once"))


def test_oom_backoff_recovers_on_the_next_call(tiny_bert: str,
                                               spy: Callable[..., ForwardSpy],
                                               record_property: Callable) -> None:
    """One call hits simulated OOM above 3 texts; the next call has no OOM.

    Checks: the next call is not stuck at the reduced batch size (its first batch holds all
    its texts).
    """
    emb = BGEEmbedder(tiny_bert, device="cpu")
    spy(oom_above(OOM_ABOVE))
    emb.encode(TEXTS)
    after = spy()
    emb.encode(TEXTS[:8])
    assert after.attempts == [8]
    record_property("held", "the next call ran all 8 texts in one batch")


def test_oom_on_a_single_text_is_raised(tiny_bert: str, spy: Callable[..., ForwardSpy],
                                        record_property: Callable) -> None:
    """Every forward pass raises torch.OutOfMemoryError, even for one text.

    Checks: the error reaches the caller after halving down to one text (no endless retry),
    and a non-OOM RuntimeError is raised at once, without retrying.
    """
    emb = BGEEmbedder(tiny_bert, device="cpu", max_batch_tokens=4096)  # all texts in 1 batch
    always = spy(oom_above(0))
    with pytest.raises(torch.OutOfMemoryError):
        emb.encode(TEXTS)
    assert always.attempts[0] == len(TEXTS) and always.attempts[-1] == 1
    assert all(a > b for a, b in zip(always.attempts, always.attempts[1:], strict=False))
    other = spy(lambda n: RuntimeError("cuDNN error: not an OOM"))
    with pytest.raises(RuntimeError, match="not an OOM"):
        emb.encode(TEXTS)
    assert other.attempts == [len(TEXTS)]
    record_property("iterations", len(always.attempts))
    record_property("held", f"OOM re-raised after {len(always.attempts)} attempts "
                            f"({' > '.join(map(str, always.attempts))}); other errors: 1 try")


def test_oom_backoff_through_the_index(m3x: BGEM3Embedder,  # noqa: F811
                                       spy: Callable[..., ForwardSpy],
                                       record_property: Callable) -> None:
    """HybridIndex.add of 14 documents and search_many of 4 queries while forward passes above 2
    texts raise torch.OutOfMemoryError.

    Checks: every document is stored, and the hits and scores equal an index built without
    OOM.
    """
    ids = [f"doc-{i}" for i in range(len(CORPUS))]
    plain = HybridIndex(m3x)
    plain.add(CORPUS, ids=ids)
    want = plain.search_many(QUERIES, k=5)
    oom = spy(oom_above(2))
    index = HybridIndex(m3x)
    index.add(CORPUS, ids=ids)
    got = index.search_many(QUERIES, k=5)
    assert len(index) == len(CORPUS)
    for a, b in zip(got, want, strict=True):
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-5,
                                   atol=1e-6)
    failed = len(oom.attempts) - len(oom.succeeded)
    assert failed >= 2
    record_property("held", f"{failed} simulated OOMs: same documents, hits and scores")


def test_every_forward_pass_stays_within_its_budget(tiny_bert: str,
                                                    spy: Callable[..., ForwardSpy],
                                                    record_property: Callable) -> None:
    """20 random batches (1-40 texts of 1-80 words) through an embedder with batch_size=8 and
    max_batch_tokens=256.

    Checks: no forward pass holds more than 8 texts or more than 256 padded tokens (unless
    it is a single text), and the outputs equal one-by-one encoding in input order.
    """
    emb = BGEEmbedder(tiny_bert, device="cpu", batch_size=8, max_batch_tokens=256,
                      passage_max_length=128)
    budget = spy()
    rng = random.Random(7)
    passes = 0
    for _ in range(20):
        texts = [" ".join(rng.choices(CORPUS[4].split(), k=rng.randint(1, 80)))
                 for _ in range(rng.randint(1, 40))]
        budget.attempts.clear()
        budget.padded_tokens.clear()
        out = emb.encode(texts)
        passes += len(budget.attempts)
        assert max(budget.attempts) <= 8
        assert all(t <= 256 or n == 1
                   for t, n in zip(budget.padded_tokens, budget.attempts, strict=True))
        pick = rng.randrange(len(texts))
        np.testing.assert_allclose(out[pick], emb.encode([texts[pick]])[0], rtol=1e-5, atol=1e-5)
    record_property("iterations", 20)
    record_property("held", f"{passes} forward passes, all within 8 texts and 256 tokens")


def test_per_call_limits_reach_index_users_before_any_work(
        m3x: BGEM3Embedder, spy: Callable[..., ForwardSpy],  # noqa: F811
        record_property: Callable) -> None:
    """A BGE-M3 with max_texts_per_call=4 and max_tokens_per_call=200 behind a HybridIndex: add 5
    documents, add 2 long ones, search_many 5 queries.

    Checks: each raises ValueError naming the limit and the fix, before any forward pass;
    the index is unchanged.
    """
    limited = BGEM3Embedder(m3x.model_name, device="cpu", max_texts_per_call=4,
                            max_tokens_per_call=200)
    index = HybridIndex(limited)
    index.add(CORPUS[:4], ids=["a", "b", "c", "d"])
    before = (len(index), index.search_many(QUERIES[:2], k=4))
    calls = spy()
    cases = [
        (lambda: index.add(CORPUS[:5]), "max_texts_per_call=4"),
        (lambda: index.add([CORPUS[0] * 20, CORPUS[1] * 20]), "max_tokens_per_call=200"),
        (lambda: index.search_many(CORPUS[:5]), "max_texts_per_call=4"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=f"{match}.*(split|raise)"):
            call()
    assert calls.attempts == []
    assert (len(index), index.search_many(QUERIES[:2], k=4)) == before
    record_property("iterations", len(cases))
    record_property("held", "3/3 rejected with the limit named, before any forward pass; "
                            "index unchanged")


def test_per_call_limits_through_the_adapters(tiny_bert: str,
                                              m3x: BGEM3Embedder,  # noqa: F811
                                              spy: Callable[..., ForwardSpy],
                                              record_property: Callable) -> None:
    """max_texts_per_call=2 and max_tokens_per_call=20 set on LangChain BGEEmbeddings /
    BGEM3SparseEmbeddings and LlamaIndex BGEEmbedding / BGEM3SparseEmbedding (sync and async
    calls over the limits), and 0 or -1 as the limit.

    Checks: every call over a limit raises ValueError naming it before any forward pass;
    calls within the limits work; 0 and -1 are refused when the adapter is built.
    """
    import asyncio

    from pydantic import ValidationError

    from bge_integrations.langchain import BGEEmbeddings, BGEM3SparseEmbeddings
    from bge_integrations.llama_index import BGEEmbedding, BGEM3SparseEmbedding

    limits = {"device": "cpu", "max_texts_per_call": 2, "max_tokens_per_call": 20,
              "passage_max_length": 16}
    lc_dense = BGEEmbeddings(model_name=tiny_bert, **limits)
    lc_sparse = BGEM3SparseEmbeddings(model_name=m3x.model_name, **limits)
    li_dense = BGEEmbedding(model_name=tiny_bert, embed_batch_size=10, **limits)
    li_sparse = BGEM3SparseEmbedding(model_name=m3x.model_name, **limits)
    three, long = ["a", "b", "c"], ["panda " * 50, "bear " * 50]
    calls = [
        (lambda: lc_dense.embed_documents(three), "max_texts_per_call=2"),
        (lambda: lc_dense.embed_documents(long), "max_tokens_per_call=20"),
        (lambda: asyncio.run(lc_dense.aembed_documents(three)), "max_texts_per_call=2"),
        (lambda: lc_sparse.embed_documents(three), "max_texts_per_call=2"),
        (lambda: li_dense.get_text_embedding_batch(three), "max_texts_per_call=2"),
        (lambda: li_dense.get_text_embedding_batch(long), "max_tokens_per_call=20"),
        (lambda: asyncio.run(li_dense.aget_text_embedding_batch(three)), "max_texts_per_call=2"),
        (lambda: li_sparse.get_text_embedding_batch(three), "max_texts_per_call=2"),
    ]
    forward = spy()
    for call, match in calls:
        with pytest.raises(ValueError, match=match):
            call()
    assert forward.attempts == []
    assert len(lc_dense.embed_documents(["a", "b"])) == 2
    assert len(li_dense.get_text_embedding_batch(three[:2])) == 2
    for adapter in (BGEEmbeddings, BGEEmbedding):
        for bad in (0, -1):
            with pytest.raises(ValidationError, match="max_texts_per_call"):
                adapter(model_name=tiny_bert, device="cpu", max_texts_per_call=bad)
    record_property("iterations", len(calls) + 4)
    record_property("held", (
        f"{len(calls)}/{len(calls)} over-limit calls rejected with the limit named, before any "
        "forward pass; in-limit calls work; 0 and -1 refused at construction"))


@pytest.mark.parametrize("option", ["max_texts_per_call", "max_tokens_per_call"])
def test_limit_options_are_checked_at_construction(tiny_bert: str, option: str) -> None:
    """max_texts_per_call / max_tokens_per_call set to 0, -1, "4", 2.5 or True.

    Checks: the constructor raises ValueError naming the option (as for batch_size).
    """
    for bad in (0, -1, "4", 2.5, True):
        with pytest.raises(ValueError, match=option):
            BGEEmbedder(tiny_bert, device="cpu", **{option: bad})
