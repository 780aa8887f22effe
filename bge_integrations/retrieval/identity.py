"""Model identity of a saved index: what it records about its model, and the check on load.

A saved index records the model's name, its source (the hub id or path it was loaded from, so
``load`` can reopen it without being told), its sizes and a probe text's embeddings. On load
the embedder must give the same probe embeddings (cosine >= :data:`PROBE_MIN_COSINE`) and
sizes; otherwise :class:`ModelMismatchError`. Every recorded field is checked for type and
bounds first: a malformed record raises :class:`IndexFileError`.

Example:
    >>> check_format_string("{}{}")
    '{}{}'
    >>> check_format_string("{:>9999999}{}")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bge_integrations.retrieval.errors.IndexFileError: query_instruction_format ... '{}' fields...
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import IndexFileError, ModelMismatchError

__all__ = ["PROBE_TEXT", "PROBE_MIN_COSINE", "model_fingerprint", "check_model",
           "dense_fingerprint", "check_dense_model", "dense_options", "saved_source",
           "check_format_string"]

PROBE_TEXT = "BGE-M3 fingerprint: dense, sparse and multi-vector retrieval in 100+ languages."
#: cosine similarity a probe embedding must reach to count as "the same model"
PROBE_MIN_COSINE = 0.99
#: bounds on recorded fields
MAX_NAME = 4096
MAX_INSTRUCTION = 1 << 16
MAX_DIM = 1 << 16
MAX_VOCAB = 1 << 24
_POOLINGS = ("cls", "mean", "last_token")


def _fail(field: str, value: object, expected: str) -> IndexFileError:
    return IndexFileError(f"the saved model record {field!r} = {value!r:.60} is invalid "
                          f"(expected {expected}); the saved index is corrupted.")


def _int(saved: Mapping[str, Any], key: str, high: int) -> int:
    value = saved.get(key)
    if type(value) is not int or not 0 < value <= high:
        raise _fail(key, value, f"an int in [1, {high}]")
    return value


def _str(saved: Mapping[str, Any], key: str, high: int, *, optional: bool = False) -> str | None:
    value = saved.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > high:
        raise _fail(key, value, f"a str of at most {high} characters")
    return value


def _vector(value: object, field: str, length: int) -> np.ndarray:
    if (not isinstance(value, list) or len(value) > length
            or not all(isinstance(x, int | float) and not isinstance(x, bool)
                       and math.isfinite(x) for x in value)):
        raise _fail(field, value, f"a list of at most {length} finite numbers")
    return np.asarray(value, dtype=np.float64)


def _sparse(value: object, vocab: int) -> dict[str, float]:
    if not isinstance(value, dict) or len(value) > vocab or not all(
            isinstance(k, str) and k.isdigit() and len(k) <= 9 and int(k) < vocab
            and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for k, v in value.items()):
        raise _fail("probe.sparse", value, f"token ids below {vocab} -> finite weights")
    return value


def check_format_string(fmt: object, field: str = "query_instruction_format") -> str:
    """``fmt`` if it has exactly two plain ``{}`` fields and is at most 64 KiB; else
    :class:`IndexFileError` (a crafted format could pad every query to megabytes)."""
    if not isinstance(fmt, str) or len(fmt) > MAX_INSTRUCTION:
        raise _fail(field, fmt, f"a str of at most {MAX_INSTRUCTION} characters")
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(fmt)
                  if name is not None]
    except ValueError:
        fields = None
    if fields is None or fields != [("", "", None), ("", "", None)]:
        msg = (f"{field} {fmt!r:.60} must have exactly two plain '{{}}' fields (instruction, "
               "then query).")
        raise IndexFileError(msg)
    return fmt


def saved_source(saved: object) -> str | None:
    """Where the recorded model was loaded from (its ``source``, else its ``name``), or None."""
    if not isinstance(saved, Mapping):
        return None
    for key in ("source", "name"):
        value = saved.get(key)
        if isinstance(value, str) and value and len(value) <= MAX_NAME:
            return value
    return None


def _probe(m3: Any, colbert: bool) -> dict[str, Any]:
    out = m3.encode_documents([PROBE_TEXT], dense=True, sparse=True, colbert=colbert)
    probe = {"dense": out.dense[0].tolist(),
             "sparse": {str(k): float(v) for k, v in sorted(out.sparse[0].items())}}
    if colbert:
        probe["colbert"] = out.colbert[0].mean(axis=0).tolist()
    return probe


def model_fingerprint(m3: Any, colbert: bool) -> dict[str, Any]:
    """What identifies a BGE-M3 model behind an index: name, source, sizes, heads, probe."""
    return {"name": m3.spec.name, "source": m3.model_name, "dim": int(m3.dim),
            "vocab_size": int(m3.vocab_size),
            "heads": ["dense", "sparse", *(["colbert"] if colbert else [])],
            "probe": _probe(m3, colbert)}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm else float(np.array_equal(a, b))


def _differs(mine: Any, theirs: np.ndarray) -> bool:
    """Whether a probe output differs from the saved one (other shape, or cosine < 0.99)."""
    mine_arr = np.asarray(mine, dtype=np.float64)
    return mine_arr.shape != theirs.shape or _cosine(mine_arr, theirs) < PROBE_MIN_COSINE


def _checked_m3_record(saved: object) -> dict[str, Any]:
    if not isinstance(saved, dict):
        raise _fail("model", saved, "an object")
    _str(saved, "name", MAX_NAME)
    _str(saved, "source", MAX_NAME, optional=True)
    dim, vocab = _int(saved, "dim", MAX_DIM), _int(saved, "vocab_size", MAX_VOCAB)
    heads = saved.get("heads")
    if heads not in (["dense", "sparse"], ["dense", "sparse", "colbert"]):
        raise _fail("heads", heads, "['dense', 'sparse'] or ['dense', 'sparse', 'colbert']")
    probe = saved.get("probe")
    if not isinstance(probe, dict):
        raise _fail("probe", probe, "an object")
    record = {"dense": _vector(probe.get("dense"), "probe.dense", dim),
              "sparse": _sparse(probe.get("sparse"), vocab)}
    if "colbert" in heads:
        record["colbert"] = _vector(probe.get("colbert"), "probe.colbert", dim)
    return record


def check_model(saved: object, m3: Any) -> None:
    """Raise :class:`ModelMismatchError` unless ``m3`` is the model that built the index.

    Raises:
        IndexFileError: the record itself is malformed.
    """
    stored = _checked_m3_record(saved)
    name = saved["name"]
    fix = (f"load it with BGEM3Embedder({saved_source(saved)!r}) or rebuild the index with "
           "this model.")
    for key, mine in (("name", m3.spec.name), ("dim", m3.dim), ("vocab_size", m3.vocab_size)):
        if saved.get(key) != mine:
            msg = (f"The index was built with {key}={saved.get(key)!r:.80}, this model has "
                   f"{mine!r}; {fix}")
            raise ModelMismatchError(msg)
    colbert = "colbert" in saved["heads"]
    try:
        probe = _probe(m3, colbert)
    except FileNotFoundError as exc:
        msg = f"The index needs the model's {saved['heads']} outputs: {exc}"
        raise ModelMismatchError(msg) from None
    tokens = sorted(set(probe["sparse"]) | set(stored["sparse"]))
    pairs = {
        "dense": (probe["dense"], stored["dense"]),
        "sparse": ([probe["sparse"].get(t, 0.0) for t in tokens],
                   np.asarray([stored["sparse"].get(t, 0.0) for t in tokens], np.float64)),
    }
    if colbert:
        pairs["colbert"] = (probe["colbert"], stored["colbert"])
    for head, (mine, theirs) in pairs.items():
        if _differs(mine, theirs):
            msg = (f"The {head} output of this model differs from the model that built the "
                   f"index (same name {name!r}, different weights); {fix}")
            raise ModelMismatchError(msg)


def dense_fingerprint(embedder: Any) -> dict[str, Any]:
    """What identifies the model behind a dense index, and how to load it again.

    ``source`` is the hub id or path the embedder was loaded from; pooling and the query
    instruction are recorded so that ``DenseIndex.load`` can rebuild the same embedder.
    """
    spec = embedder.spec
    return {"name": spec.name, "source": embedder.model_name, "dim": int(embedder.dim),
            "pooling": spec.pooling.value, "query_instruction": spec.query_instruction,
            "query_instruction_format": spec.query_instruction_format, "heads": ["dense"],
            "probe": {"dense": embedder.encode_documents([PROBE_TEXT])[0].tolist()}}


def dense_options(saved: object) -> dict[str, Any]:
    """The embedder options a dense index recorded (pooling, instruction, its format), checked.

    Raises:
        IndexFileError: a field is missing, of the wrong type, too long, or the format string
            has other than two plain ``{}`` fields.
    """
    if not isinstance(saved, dict):
        raise _fail("model", saved, "an object")
    pooling = saved.get("pooling")
    if pooling not in _POOLINGS:
        raise _fail("pooling", pooling, f"one of {list(_POOLINGS)}")
    return {"pooling": pooling,
            "query_instruction": _str(saved, "query_instruction", MAX_INSTRUCTION,
                                      optional=True) or "",
            "query_instruction_format": check_format_string(saved.get("query_instruction_format"))}


def check_dense_model(saved: object, embedder: Any) -> None:
    """Raise :class:`ModelMismatchError` unless ``embedder`` is the model that built the index.

    The dimension and a probe text's embedding must match; the name need not, so a renamed
    or moved copy of the model is accepted.

    Raises:
        IndexFileError: the record itself is malformed.
    """
    if not isinstance(saved, dict):
        raise _fail("model", saved, "an object")
    dim = _int(saved, "dim", MAX_DIM)
    probe = saved.get("probe")
    stored = _vector(probe.get("dense") if isinstance(probe, dict) else None, "probe.dense", dim)
    fix = f"query it with the model it was built with ({saved_source(saved)!r})."
    if dim != embedder.dim:
        msg = (f"The index holds {dim}-d vectors but the embedder makes {embedder.dim}-d ones; "
               f"{fix}")
        raise ModelMismatchError(msg)
    if _differs(embedder.encode_documents([PROBE_TEXT])[0], stored):
        msg = (f"The embeddings of this model differ from those of the model that built the "
               f"index (other weights, pooling or dtype); {fix}")
        raise ModelMismatchError(msg)
