"""Validation of what users pass to ``encode*``: a list of strings, nothing else."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["validate_texts", "optional_positive_int"]


def validate_texts(texts: object, *, name: str = "texts", max_texts: int | None = None
                   ) -> list[str]:
    """Return ``texts`` as a list of str or raise a ``TypeError`` naming the bad element.

    A bare string is rejected (it would otherwise be embedded character by character).
    """
    if isinstance(texts, str | bytes):
        msg = (f"{name} must be a list of strings, got a single {type(texts).__name__}; "
               f"wrap it in a list: [{name[:-1] if name.endswith('s') else name}].")
        raise TypeError(msg)
    if texts is None or not isinstance(texts, Iterable) or isinstance(texts, dict):
        msg = f"{name} must be a list of strings, got {type(texts).__name__}."
        raise TypeError(msg)
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            msg = f"{name}[{i}] must be a str, got {type(text).__name__}: {text!r:.60}."
            raise TypeError(msg)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                msg = (f"{name}[{i}] is not valid Unicode (a lone surrogate at position "
                       f"{exc.start}); decode your input with errors='replace' or fix it.")
                raise ValueError(msg) from None
    if max_texts is not None and len(out) > max_texts:
        msg = (f"{len(out)} {name} in one call exceed max_texts_per_call={max_texts}; "
               "split the input or raise the limit.")
        raise ValueError(msg)
    return out


def optional_positive_int(value: object, name: str) -> int | None:
    """``value`` if it is None or a positive int (not a bool), else a ``ValueError`` naming it."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        msg = f"{name} must be a positive int or None, got {value!r}."
        raise ValueError(msg)
    return value
