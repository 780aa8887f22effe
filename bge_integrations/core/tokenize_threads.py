"""Tokenize a large call on several threads: a fast tokenizer releases the GIL while it works.

The tokenizer's own thread pool (``TOKENIZERS_PARALLELISM``) is off after a fork and wherever
users turn it off; a call of thousands of texts then tokenizes on one core while the others
wait for the first forward pass. Splitting the texts into contiguous parts tokenized side by
side gives the same ids in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .truncate import prefix_budget, token_ids

__all__ = ["token_ids_in_threads", "MIN_TEXTS_PER_THREAD"]

#: a thread takes at least this many texts (fewer cost more to hand out than they save)
MIN_TEXTS_PER_THREAD = 256


def token_ids_in_threads(tokenizer: Any, texts: Sequence[str], max_length: int, *,
                         threads: int, **kwargs: Any) -> list[list[int]]:
    """:func:`.truncate.token_ids` of ``texts`` on up to ``threads`` threads (fast tokenizers).

    The caller holds the tokenizer's lock. A fast tokenizer refuses a change of its settings
    while another thread encodes, so only calls with one setting run side by side: texts long
    enough to be read from a prefix (:func:`.truncate.prefix_budget`) are tokenized first in
    the calling thread, then one short text alone (it sets the truncation), then the other
    short texts in contiguous parts, one per thread.
    """
    texts = list(texts)
    parts = min(threads, len(texts) // MIN_TEXTS_PER_THREAD)
    if parts < 2 or not getattr(tokenizer, "is_fast", False):
        return token_ids(tokenizer, texts, max_length, **kwargs)
    budget = prefix_budget(max_length)
    short = [i for i, text in enumerate(texts) if len(text) <= budget]
    out: list[list[int] | None] = [None] * len(texts)
    for i in (i for i, text in enumerate(texts) if len(text) > budget):
        out[i] = token_ids(tokenizer, [texts[i]], max_length, **kwargs)[0]
    if short:
        out[short[0]] = token_ids(tokenizer, [texts[short[0]]], max_length, **kwargs)[0]
        rest = short[1:]
        step = max(1, -(-len(rest) // parts))
        chunks = [rest[i:i + step] for i in range(0, len(rest), step)]
        with ThreadPoolExecutor(max(1, len(chunks)), thread_name_prefix="bge-tokenize") as pool:
            done = pool.map(lambda chunk: token_ids(tokenizer, [texts[i] for i in chunk],
                                                    max_length, **kwargs), chunks)
            for chunk, ids in zip(chunks, done, strict=True):
                for i, row in zip(chunk, ids, strict=True):
                    out[i] = row
    return out  # type: ignore[return-value]
