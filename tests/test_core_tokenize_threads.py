"""Large calls tokenize on several threads with the ids and order of one call."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from bge_integrations import BGEEmbedder
from bge_integrations.core import tokenize_threads
from bge_integrations.core.tokenize_threads import MIN_TEXTS_PER_THREAD, token_ids_in_threads
from bge_integrations.core.truncate import token_ids


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["panda", "bear", "中文", "naïve", "café", "😀", "the", "quick", "fox", "!!"]
    out = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for _ in range(n)]
    for i in (3, n // 3, n // 2, n - 2):  # over the prefix budget: read from a prefix
        out[i] = f"panda {i} " * 3_000
    out[n // 4] = ""
    return out


@pytest.fixture
def threads_used(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Names of the threads that ran a tokenizer call."""
    names: set[str] = set()

    def spy(*args: object, **kwargs: object) -> list[list[int]]:
        names.add(threading.current_thread().name)
        return token_ids(*args, **kwargs)

    monkeypatch.setattr(tokenize_threads, "token_ids", spy)
    return names


@pytest.mark.parametrize("model", ["minilm_dir", "tiny_m3", "tiny_mistral"])
def test_threads_give_the_ids_of_one_call(model: str, request: pytest.FixtureRequest,
                                          threads_used: set[str]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(request.getfixturevalue(model))
    texts = _texts(3 * MIN_TEXTS_PER_THREAD + 7)
    want = token_ids(tokenizer, texts, 64)
    for threads in (2, 3):
        threads_used.clear()
        assert token_ids_in_threads(tokenizer, texts, 64, threads=threads) == want
        assert len([n for n in threads_used if n.startswith("bge-tokenize")]) >= 2
    got = token_ids_in_threads(tokenizer, texts, 64, threads=2, add_special_tokens=False)
    assert got == token_ids(tokenizer, texts, 64, add_special_tokens=False)


class _Watched:
    """A fast tokenizer that records calls whose settings differ from a call running at the
    same time in another thread (a real one raises "Already borrowed" at such a change)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self._running: dict[int, str] = {}
        self.clashes: list[str] = []
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    def __call__(self, batch: list[str], **kwargs: Any) -> Any:
        settings = repr(sorted(kwargs.items()))
        with self._lock:
            self.calls += 1
            if any(other != settings for other in self._running.values()):
                self.clashes.append(settings)
            self._running[threading.get_ident()] = settings
        try:
            time.sleep(0.002)  # widen the window two calls could overlap in
            return self._tokenizer(batch, **kwargs)
        finally:
            with self._lock:
                del self._running[threading.get_ident()]


@pytest.mark.parametrize("model", ["minilm_dir", "tiny_m3"])
def test_calls_side_by_side_share_one_setting(model: str, request: pytest.FixtureRequest
                                              ) -> None:
    """Long texts are read from prefixes by calls with other settings: never beside others."""
    from transformers import AutoTokenizer

    watched = _Watched(AutoTokenizer.from_pretrained(request.getfixturevalue(model)))
    texts = _texts(4 * MIN_TEXTS_PER_THREAD, seed=2)
    want = token_ids(watched._tokenizer, texts, 48)
    for _ in range(3):
        assert token_ids_in_threads(watched, texts, 48, threads=4) == want
    assert watched.clashes == []
    assert watched.calls > 3 * 5  # prefix reads of the long texts, the first text, 4 parts


def test_small_calls_and_one_thread_stay_in_the_calling_thread(minilm_dir: str,
                                                               threads_used: set[str]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    small = _texts(2 * MIN_TEXTS_PER_THREAD - 1)
    assert token_ids_in_threads(tokenizer, small, 32, threads=4) == token_ids(tokenizer, small,
                                                                               32)
    big = _texts(4 * MIN_TEXTS_PER_THREAD)
    assert token_ids_in_threads(tokenizer, big, 32, threads=1) == token_ids(tokenizer, big, 32)
    assert threads_used == {threading.current_thread().name}


def test_slow_tokenizers_stay_in_the_calling_thread(threads_used: set[str]) -> None:
    class Slow:  # a Python tokenizer holds the GIL: threads would only add overhead
        is_fast = False

        def __call__(self, batch: list[str], **kwargs: object) -> dict:
            return {"input_ids": [[1, len(t), 2] for t in batch]}

    texts = ["panda bear"] * (4 * MIN_TEXTS_PER_THREAD)
    assert token_ids_in_threads(Slow(), texts, 8, threads=4) == [[1, 10, 2]] * len(texts)
    assert threads_used == {threading.current_thread().name}


def test_encode_from_threads_with_different_limits_at_once(minilm_dir: str) -> None:
    """Two limits (query and passage) tokenized side by side on one shared tokenizer."""
    emb = BGEEmbedder(minilm_dir, pooling="mean", device="cpu", query_max_length=8,
                      passage_max_length=48)
    texts = _texts(2 * MIN_TEXTS_PER_THREAD + 50, seed=1)
    texts = [t or "x" for t in texts]
    want_q = emb._tokenize(texts, 8)
    want_p = emb._tokenize(texts, 48)
    results: dict[str, list[list[int]]] = {}
    errors: list[BaseException] = []

    def run(name: str, limit: int) -> None:
        try:
            for _ in range(3):
                results[name] = emb._tokenize(texts, limit)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(f"{limit}-{i}", limit))
               for i in range(3) for limit in (8, 48)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    for name, got in results.items():
        assert got == (want_q if name.startswith("8-") else want_p)
