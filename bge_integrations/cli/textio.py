"""Reading texts from plain-text, JSONL and CSV files and writing embeddings to .npy or JSONL.

Every problem in an input file is an :class:`InputError` whose message names the file and line.
Files are UTF-8, with or without a byte-order mark. CSV cells are text; metadata cells that
read as a JSON number or as ``true`` / ``false`` (any case) become numbers and booleans, as
they would be in JSONL, so ``--filter year=2019`` matches a CSV column ``year``.

Example:
    >>> from bge_integrations.cli.textio import read_records
    >>> records = read_records("corpus.jsonl")  # doctest: +SKIP
    >>> records[0].id, records[0].text[:20], records[0].metadata  # doctest: +SKIP
    ('doc-1', 'BGE is an embedding', {'topic': 'bge'})
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

__all__ = ["TextRecord", "InputError", "INPUT_FORMATS", "OUTPUT_FORMATS", "read_records",
           "record_ids", "check_output_path", "check_index_dir", "write_embeddings"]

#: file suffix -> input format
INPUT_FORMATS = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".ndjson": "jsonl",
                 ".csv": "csv", ".tsv": "tsv"}
#: file suffix -> output format (``-`` writes JSONL to standard output)
OUTPUT_FORMATS = {".npy": "npy", ".jsonl": "jsonl"}


class InputError(ValueError):
    """An input file is missing, unreadable or has a malformed line."""


@dataclass
class TextRecord:
    """One text read from an input file, with its id and the other fields as metadata."""

    text: str
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: line of the input file it came from (1-based; for messages)
    line: int = 0


def _input_format(path: str, given: str | None) -> str:
    """``given``, or the format implied by the file suffix (``-`` means plain text)."""
    if given is not None:
        return given
    if path == "-":
        return "text"
    fmt = INPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        valid = ", ".join(INPUT_FORMATS)
        msg = (f"{path}: cannot tell the input format from the suffix; use one of {valid} "
               "or pass --input-format.")
        raise InputError(msg)
    return fmt


def read_records(path: str, *, fmt: str | None = None, text_field: str = "text",
                 id_field: str = "id") -> list[TextRecord]:
    """Read every text of ``path`` (``-``: standard input).

    Formats: ``text`` (one text per non-blank line), ``jsonl`` (one JSON object per line with
    ``text_field``, optional ``id_field``, other keys become metadata; a bare JSON string is a
    text), ``csv``/``tsv`` (a header row naming ``text_field``; other columns become metadata).

    Raises:
        InputError: the file is missing or not UTF-8, a line is malformed, ids repeat, or
            there is no text at all.
    """
    fmt = _input_format(path, fmt)
    readers = {"text": _read_text, "jsonl": _read_jsonl, "csv": _read_csv, "tsv": _read_csv}
    if fmt not in readers:
        msg = f"unknown input format {fmt!r}; valid: {', '.join(readers)}."
        raise InputError(msg)
    try:
        with _open(path) as stream:
            records = list(readers[fmt](stream, path, text_field, id_field, fmt))
    except UnicodeDecodeError as exc:
        msg = f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})."
        raise InputError(msg) from None
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit(), a NUL byte
        msg = f"{path}: malformed {fmt.upper()} ({exc})."
        raise InputError(msg) from None
    if not records:
        msg = f"{path}: no texts found."
        raise InputError(msg)
    _check_unique_ids(records, path)
    return records


def record_ids(records: Sequence[TextRecord]) -> list[str]:
    """One id per record: its own, else its 0-based position in the file (as a string).

    :func:`read_records` has checked that no position id equals another record's own id.
    """
    return [r.id if r.id is not None else str(i) for i, r in enumerate(records)]


def _open(path: str) -> TextIO:
    if path == "-":  # read whole, so that standard input itself stays open
        return io.StringIO(sys.stdin.buffer.read().decode("utf-8-sig"), newline="")
    file = Path(path).expanduser()
    if not file.exists():
        msg = f"{path}: no such file."
        raise InputError(msg)
    if not file.is_file():
        msg = f"{path}: not a file."
        raise InputError(msg)
    return file.open(encoding="utf-8-sig", newline="")


def _read_text(stream: TextIO, path: str, *_: str) -> Iterator[TextRecord]:
    for lineno, line in enumerate(stream, 1):
        text = line.rstrip("\r\n")
        if text.strip():
            yield TextRecord(text, line=lineno)


def _read_jsonl(stream: TextIO, path: str, text_field: str, id_field: str, _fmt: str
                ) -> Iterator[TextRecord]:
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            msg = f"{where}: invalid JSON ({exc.msg} at column {exc.colno})."
            raise InputError(msg) from None
        except RecursionError:
            msg = f"{where}: the JSON is nested too deeply to read."
            raise InputError(msg) from None
        if isinstance(item, str):
            yield TextRecord(_text(item, where), line=lineno)
            continue
        if not isinstance(item, dict):
            msg = (f"{where}: expected a JSON object with a {text_field!r} field or a JSON "
                   f"string, got {type(item).__name__}.")
            raise InputError(msg)
        yield _record(dict(item), where, text_field, id_field, lineno)


def _read_csv(stream: TextIO, path: str, text_field: str, id_field: str, fmt: str
              ) -> Iterator[TextRecord]:
    reader = csv.reader(stream, delimiter="\t" if fmt == "tsv" else ",")
    header = next(reader, None)
    if header is None:
        return
    if text_field not in header:
        msg = (f"{path}:1: no {text_field!r} column in the header (columns: "
               f"{', '.join(header) or 'none'}); pass --text-field.")
        raise InputError(msg)
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            msg = f"{where}: {len(row)} fields, but the header has {len(header)}."
            raise InputError(msg)
        cells = dict(zip(header, row, strict=True))
        record = _record(cells, where, text_field, id_field, reader.line_num)
        record.metadata = {key: _cell_value(value) for key, value in record.metadata.items()}
        yield record


#: a JSON number, as JSONL would read it (no leading zeros, no NaN / Infinity)
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_INT64 = 2**63


def _cell_value(cell: str) -> str | int | float | bool:
    """A CSV metadata cell: a number or boolean when it reads as one, else the text itself.

    Integers outside int64 and floats that overflow stay text (no precision is lost).
    """
    text = cell.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if not _JSON_NUMBER.fullmatch(text):
        return cell
    if text.lstrip("-").isdigit():
        number = int(text)
        return number if -_INT64 <= number < _INT64 else cell
    value = float(text)
    return value if math.isfinite(value) else cell


def _record(item: dict[str, Any], where: str, text_field: str, id_field: str,
            line: int) -> TextRecord:
    if text_field not in item:
        keys = ", ".join(map(str, item)) or "none"
        msg = f"{where}: no {text_field!r} field (fields: {keys}); pass --text-field."
        raise InputError(msg)
    text = _text(item.pop(text_field), where)
    raw_id = item.pop(id_field, None)
    if raw_id is not None and not isinstance(raw_id, str | int):
        msg = f"{where}: {id_field!r} must be a string or an integer, got {type(raw_id).__name__}."
        raise InputError(msg)
    return TextRecord(text, None if raw_id in (None, "") else str(raw_id), item, line)


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        msg = f"{where}: the text must be a string, got {type(value).__name__}."
        raise InputError(msg)
    if not value.strip():
        msg = f"{where}: empty text."
        raise InputError(msg)
    return value


def _check_unique_ids(records: Sequence[TextRecord], path: str) -> None:
    """Own ids are distinct, and no text without one would get (as its position) another's."""
    own: dict[str, int] = {}
    for record in records:
        if record.id is None:
            continue
        if record.id in own:
            msg = (f"{path}:{record.line}: id {record.id!r} appears more than once (first at "
                   f"line {own[record.id]}).")
            raise InputError(msg)
        own[record.id] = record.line
    for position, record in enumerate(records):
        if record.id is None and str(position) in own:
            msg = (f"{path}:{record.line}: this text has no id, and its position id "
                   f"{str(position)!r} is the id of the text at line {own[str(position)]}; "
                   "give every text an id, or none.")
            raise InputError(msg)


def check_output_path(path: str) -> str:
    """The output format of ``path`` (``-``: JSONL on standard output), checked before any work.

    Raises:
        InputError: unknown suffix or a parent directory that does not exist.
    """
    if path == "-":
        return "jsonl"
    out = Path(path).expanduser()
    fmt = OUTPUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        msg = f"{path}: unknown output suffix; use .npy or .jsonl (or - for JSONL on stdout)."
        raise InputError(msg)
    if not out.parent.is_dir():
        msg = f"{path}: directory {str(out.parent)!r} does not exist."
        raise InputError(msg)
    if out.is_dir():
        msg = f"{path}: is a directory; name a file to write."
        raise InputError(msg)
    return fmt


def check_index_dir(path: str) -> None:
    """Check an index output directory before any work: it may exist (as a directory) or not.

    Raises:
        InputError: ``path`` is an existing file, or its parent is not a directory.
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        msg = f"{path}: exists and is not a directory; pass a new or an index directory to --out."
        raise InputError(msg)
    parent = out.absolute().parent
    if not parent.is_dir():
        msg = f"{path}: directory {str(parent)!r} does not exist."
        raise InputError(msg)


def write_embeddings(path: str, records: Sequence[TextRecord], vectors: np.ndarray) -> None:
    """Write ``vectors`` as a float32 ``.npy`` matrix or as JSONL rows ``{"id", "embedding"}``.

    Rows without an id get their 0-based position (an integer) as id.
    """
    fmt = check_output_path(path)
    if fmt == "npy":
        np.save(Path(path).expanduser(), np.asarray(vectors, dtype=np.float32))
        return
    rows = (json.dumps({"id": r.id if r.id is not None else i, "embedding": v.tolist()})
            for i, (r, v) in enumerate(zip(records, vectors, strict=True)))
    if path == "-":
        for row in rows:
            sys.stdout.write(row + "\n")
        sys.stdout.flush()
        return
    with Path(path).expanduser().open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(row + "\n")
