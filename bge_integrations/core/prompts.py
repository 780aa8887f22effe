"""Prompt building: query instructions and the bge-en-icl few-shot prompt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .truncate import token_ids

__all__ = [
    "ICL_EXAMPLE_FORMAT",
    "ICL_SUFFIX",
    "format_query",
    "build_icl_prefix",
    "icl_query_token_ids",
]

ICL_EXAMPLE_FORMAT = "<instruct>{}\n<query>{}\n<response>{}"
ICL_SUFFIX = "\n<response>"


def format_query(template: str, instruction: str | None, query: str) -> str:
    """``template.format(instruction, query)``; the query alone when there is no instruction."""
    if instruction is None:
        return query
    return template.format(instruction, query)


def build_icl_prefix(examples: Sequence[Mapping[str, str]] | None,
                     default_instruction: str | None) -> str:
    """The few-shot prefix FlagICLModel puts before every query ("" without examples).

    Each example is ``<instruct>{instruct}\\n<query>{query}\\n<response>{response}``; examples
    are joined by a blank line and the prefix ends with one.
    """
    if not examples:
        return ""
    rendered = []
    for i, example in enumerate(examples):
        if not isinstance(example, Mapping):
            msg = (f"ICL example {i} must be a dict with keys 'instruct', 'query', 'response'; "
                   f"got {type(example).__name__}.")
            raise TypeError(msg)
        unknown = set(example) - {"instruct", "query", "response"}
        if unknown:
            msg = (f"ICL example {i} has unknown keys {sorted(unknown)}; "
                   "valid keys: 'instruct', 'query', 'response'.")
            raise ValueError(msg)
        rendered.append(ICL_EXAMPLE_FORMAT.format(
            example.get("instruct", default_instruction),
            example.get("query", ""),
            example.get("response", ""),
        ))
    return "\n\n".join(rendered) + "\n\n"


def icl_query_token_ids(tokenizer: Any, bodies: Sequence[str], prefix: str,
                        max_length: int) -> list[list[int]]:
    """Token ids of ICL queries, built exactly as FlagICLModel 1.4.2 builds them.

    The query body (instruction already applied) is tokenized without special tokens and
    truncated so that ``<s>`` and ``\\n<response></s>`` still fit in ``max_length``; it is then
    decoded back to text, wrapped as ``prefix + body + "\\n<response>"`` and tokenized with
    special tokens. The decode round trip is part of the reference behaviour.
    """
    bos_len = len(tokenizer("<s>", add_special_tokens=False)["input_ids"])
    tail_len = len(tokenizer(f"{ICL_SUFFIX}</s>", add_special_tokens=False)["input_ids"])
    prefix_len = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    suffix_len = len(tokenizer(ICL_SUFFIX, add_special_tokens=False)["input_ids"])
    body_budget = max_length - bos_len - tail_len
    if body_budget <= 0:
        msg = f"query_max_length={max_length} leaves no room for the ICL query body."
        raise ValueError(msg)
    full_budget = (prefix_len + suffix_len + max_length + 8) // 8 * 8 + 8
    body_ids = token_ids(tokenizer, bodies, body_budget, add_special_tokens=False)
    decoded = tokenizer.batch_decode(body_ids)
    texts = [prefix + body + ICL_SUFFIX for body in decoded]
    return tokenizer(texts, truncation=True, max_length=full_budget)["input_ids"]
