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

from .truncate import token_ids

__all__ = ["token_ids_in_threads", "MIN_TEXTS_PER_THREAD"]

#: a thread takes at least this many texts (fewer cost more to hand out than they save)
MIN_TEXTS_PER_THREAD = 256


def token_ids_in_threads(tokenizer: Any, texts: Sequence[str], max_length: int, *,
                         threads: int, **kwargs: Any) -> list[list[int]]:
    """:func:`.truncate.token_ids` of ``texts`` on up to ``threads`` threads (fast tokenizers).

    The caller holds the tokenizer's lock. The first text is tokenized alone first: that call
    sets the tokenizer's truncation, so the calls side by side only read its settings (a fast
    tokenizer refuses a change while another thread encodes).
    """
    texts = list(texts)
    parts = min(threads, len(texts) // MIN_TEXTS_PER_THREAD)
    if parts < 2 or not getattr(tokenizer, "is_fast", False):
        return token_ids(tokenizer, texts, max_length, **kwargs)
    first = token_ids(tokenizer, texts[:1], max_length, **kwargs)
    rest = texts[1:]
    step = -(-len(rest) // parts)
    chunks = [rest[i:i + step] for i in range(0, len(rest), step)]
    with ThreadPoolExecutor(len(chunks), thread_name_prefix="bge-tokenize") as pool:
        done = list(pool.map(lambda chunk: token_ids(tokenizer, chunk, max_length, **kwargs),
                             chunks))
    return first + [ids for chunk in done for ids in chunk]
