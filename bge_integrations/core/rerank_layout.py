"""How a (query, passage) pair becomes token ids, exactly as FlagEmbedding 1.4.2 builds them.

Both sides are tokenized separately without special tokens: the query cut to
``query_max_length``, the passage to ``max_length``. Then:

- cross-encoders (FlagReranker): the tokenizer's pair template around them
  (``<s> q </s></s> p </s>`` for XLM-R, ``[CLS] q [SEP] p [SEP]`` for BERT), the passage cut
  ``only_second`` so the whole pair fits ``max_length``;
- LLM rerankers (FlagLLMReranker and the layerwise / lightweight ones):
  ``[bos] q`` + ``"\\n" p`` cut ``only_second`` to ``max_length + len("\\n") + len(prompt)``,
  then ``"\\n" prompt``. The bos token is added when the tokenizer has one that differs from
  its pad token (always for the layerwise and lightweight kinds, as upstream does).

``only_second`` truncation follows transformers' legacy rule: when the passage is too short to
absorb the excess, nothing is cut. The side follows the tokenizer's ``truncation_side``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PairTemplate", "pair_template", "truncate_second", "tokenize_sides", "PromptParts",
           "llm_pair_ids", "validate_pairs"]


def validate_pairs(pairs: object) -> list[tuple[str, str]]:
    """``pairs`` as a list of ``(query, passage)`` tuples, or a ``TypeError`` naming the index.

    A bare string, ``None``, or an element that is not two strings is rejected.
    """
    if pairs is None or isinstance(pairs, str | bytes | dict):
        msg = (f"pairs must be a list of (query, passage) pairs, got "
               f"{type(pairs).__name__}; e.g. [('what is BGE?', 'BGE is ...')].")
        raise TypeError(msg)
    try:
        items = list(pairs)  # type: ignore[call-overload]
    except TypeError:
        msg = f"pairs must be a list of (query, passage) pairs, got {type(pairs).__name__}."
        raise TypeError(msg) from None
    out: list[tuple[str, str]] = []
    for i, pair in enumerate(items):
        if (isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2
                or not all(isinstance(side, str) for side in pair)):
            msg = (f"pairs[{i}] must be a (query, passage) pair of two strings, got "
                   f"{type(pair).__name__}: {pair!r:.80}.")
            raise TypeError(msg)
        out.append((pair[0], pair[1]))
    return out


def tokenize_sides(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, no special tokens, cut to ``max_length``."""
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False, truncation=True,
                     max_length=max_length)["input_ids"]


def truncate_second(first: Sequence[int], second: Sequence[int], max_length: int,
                    budget_used: int = 0, side: str = "right") -> list[int]:
    """``second`` cut so ``len(first) + len(second) + budget_used <= max_length`` (legacy
    ``only_second``: untouched if it cannot absorb the whole excess)."""
    excess = len(first) + len(second) + budget_used - max_length
    if excess <= 0 or len(second) <= excess:
        return list(second)
    return list(second[excess:]) if side == "left" else list(second[:-excess])


@dataclass(frozen=True)
class PairTemplate:
    """The special tokens a tokenizer puts around a pair, and their token type ids."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    types: tuple[tuple[int, ...], int, tuple[int, ...], int, tuple[int, ...]] | None

    @property
    def special_count(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def build(self, first: Sequence[int], second: Sequence[int]) -> list[int]:
        return [*self.prefix, *first, *self.middle, *second, *self.suffix]

    def token_types(self, first_len: int, second_len: int) -> list[int]:
        """Token type ids of a built pair (all zeros when the tokenizer has none)."""
        if self.types is None:
            return [0] * (self.special_count + first_len + second_len)
        prefix, type_a, middle, type_b, suffix = self.types
        return [*prefix, *[type_a] * first_len, *middle, *[type_b] * second_len, *suffix]


def pair_template(tokenizer: Any) -> PairTemplate:
    """Read the tokenizer's pair template by encoding a probe pair with and without specials."""
    probe_a, probe_b = "a", "b"
    full = tokenizer(probe_a, probe_b, add_special_tokens=True, return_token_type_ids=True)
    ids = list(full["input_ids"])
    a = list(tokenizer(probe_a, add_special_tokens=False)["input_ids"])
    b = list(tokenizer(probe_b, add_special_tokens=False)["input_ids"])
    start = _find(ids, a, 0)
    b_start = _find(ids, b, start + len(a))
    prefix, middle = ids[:start], ids[start + len(a):b_start]
    suffix = ids[b_start + len(b):]
    types = None
    raw = full.get("token_type_ids")
    if raw is not None and "token_type_ids" in getattr(tokenizer, "model_input_names", ()):
        raw = list(raw)
        types = (tuple(raw[:start]), raw[start] if a else 0,
                 tuple(raw[start + len(a):b_start]), raw[b_start] if b else 1,
                 tuple(raw[b_start + len(b):]))
    return PairTemplate(tuple(prefix), tuple(middle), tuple(suffix), types)


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    for i in range(start, len(haystack) - len(needle) + 1):
        if haystack[i:i + len(needle)] == needle:
            return i
    msg = "Could not read the tokenizer's pair template (probe tokens not found)."
    raise ValueError(msg)


@dataclass(frozen=True)
class PromptParts:
    """The LLM layout's fixed pieces: bos (or none), the separator and the prompt's ids."""

    bos: tuple[int, ...]
    sep: tuple[int, ...]
    prompt: tuple[int, ...]


def llm_pair_ids(query: Sequence[int], passage: Sequence[int], parts: PromptParts,
                 max_length: int, side: str = "right") -> tuple[list[int], int]:
    """``[bos] q \\n p \\n prompt`` with the passage cut ``only_second``; also returns the
    query part's length (``len([bos] q \\n)``, what the lightweight compression keeps)."""
    first = [*parts.bos, *query]
    second = truncate_second(first, [*parts.sep, *passage],
                             max_length + len(parts.sep) + len(parts.prompt), side=side)
    return [*first, *second, *parts.sep, *parts.prompt], len(first) + len(parts.sep)
