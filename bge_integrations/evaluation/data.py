"""Evaluation inputs: the BEIR directory layout, and checks of plain-Python queries and qrels.

A BEIR dataset is a directory holding ``corpus.jsonl`` (``{"_id", "title", "text"}`` per line),
``queries.jsonl`` (``{"_id", "text"}``) and ``qrels/<split>.tsv`` (a header line, then
``query-id <TAB> corpus-id <TAB> score``). In Python the same data are plain dicts, the shapes
BEIR and ranx use: queries ``{qid: text}`` and qrels ``{qid: {doc_id: grade}}``.

Example:
    >>> data = load_beir(sts_retrieval_dir(), split="test")
    >>> len(data.queries) > 100, sorted(data.qrels)[0] in data.queries
    (True, True)
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = ["BeirData", "load_beir", "read_qrels", "write_beir", "check_queries", "check_qrels",
           "sts_retrieval_dir", "few"]

#: ids named in an error message at most
_SHOWN = 5


def few(ids: Any) -> str:
    """A short, sorted listing of ``ids`` for an error message (the first few and a count).

    Example:
        >>> few(["b", "a", "c", "d", "e", "f", "g"])
        "'a', 'b', 'c', 'd', 'e' and 2 more"
    """
    names = sorted(str(i) for i in ids)
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


@dataclass(frozen=True)
class BeirData:
    """A loaded BEIR dataset.

    Attributes:
        corpus: ``{doc_id: {"title": ..., "text": ...}}``.
        queries: ``{qid: text}`` (every query of ``queries.jsonl``).
        qrels: ``{qid: {doc_id: grade}}`` of the split loaded.
        split: the qrels split (``"test"``, ``"dev"``, ...).
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    split: str

    def documents(self) -> tuple[list[str], list[str]]:
        """``(ids, texts)`` of the corpus; a text is ``title + " " + text`` when it has a title
        (BEIR's convention).

        Example:
            >>> ids, texts = load_beir(sts_retrieval_dir()).documents()
            >>> len(ids) == len(texts)
            True
        """
        ids = list(self.corpus)
        texts = [" ".join(part for part in (doc.get("title", ""), doc.get("text", ""))
                          if part) for doc in self.corpus.values()]
        return ids, texts


def sts_retrieval_dir() -> Path:
    """The shipped STS-B retrieval set (BEIR layout, splits ``dev`` and ``test``).

    Built from the STS benchmark dev split: each first sentence of a pair scored >= 4 is a
    query, its second sentence the relevant document, every second sentence is in the corpus.
    See ``README.md`` and ``LICENSE.txt`` in the directory.

    Example:
        >>> (sts_retrieval_dir() / "corpus.jsonl").is_file()
        True
    """
    return Path(str(files("bge_integrations") / "data" / "sts-retrieval"))


def _jsonl(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                msg = f"{path}, line {number}: not JSON ({exc.msg})."
                raise ValueError(msg) from None
            if not isinstance(row, dict) or any(not isinstance(row.get(key), str)
                                                for key in required):
                msg = (f"{path}, line {number}: expected an object with string fields "
                       f"{', '.join(required)}.")
                raise ValueError(msg)
            rows.append(row)
    return rows


def read_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """A BEIR qrels file (``query-id<TAB>corpus-id<TAB>score``, header optional) as
    ``{qid: {doc_id: grade}}``; a ``ValueError`` names a malformed line."""
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if number == 1 and row and row[0] == "query-id":
                continue  # the header
            if not row:
                continue
            try:
                qid, doc_id, grade = row
                qrels.setdefault(qid, {})[doc_id] = int(grade)
            except ValueError:
                msg = (f"{path}, line {number}: expected 'query-id<TAB>corpus-id<TAB>score' "
                       f"with an integer score, got {row!r:.80}.")
                raise ValueError(msg) from None
    return qrels


def load_beir(directory: str | os.PathLike[str], split: str = "test") -> BeirData:
    """Load a BEIR-layout dataset.

    Args:
        directory: holds ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
        split: which qrels file to read.

    Returns:
        The corpus, all queries and the split's qrels.

    Raises:
        FileNotFoundError: a file is missing (the message lists the splits there are).
        ValueError: a malformed line (file and line named).

    Example:
        >>> data = load_beir(sts_retrieval_dir(), split="dev")
        >>> data.split, all(d in data.corpus for g in data.qrels.values() for d in g)
        ('dev', True)
    """
    root = Path(directory).expanduser()
    qrels_path = root / "qrels" / f"{split}.tsv"
    for path in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not path.is_file():
            splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) \
                if (root / "qrels").is_dir() else []
            msg = (f"{path} does not exist; a BEIR directory holds corpus.jsonl, queries.jsonl "
                   f"and qrels/<split>.tsv (splits found: {', '.join(splits) or 'none'}).")
            raise FileNotFoundError(msg)
    corpus = {row["_id"]: {"title": str(row.get("title") or ""), "text": row["text"]}
              for row in _jsonl(root / "corpus.jsonl", ("_id", "text"))}
    queries = {row["_id"]: row["text"] for row in _jsonl(root / "queries.jsonl", ("_id", "text"))}
    qrels = read_qrels(qrels_path)
    check_qrels(qrels, queries)
    unknown = {d for judged in qrels.values() for d in judged} - corpus.keys()
    if unknown:
        msg = (f"{qrels_path} names {len(unknown)} document id(s) not in corpus.jsonl: "
               f"{few(unknown)}.")
        raise ValueError(msg)
    return BeirData(corpus, queries, qrels, split)


def write_beir(directory: str | os.PathLike[str], corpus: Mapping[str, Mapping[str, str]],
               queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, Mapping[str, int]]]
               ) -> None:
    """Write a dataset in the BEIR layout (``qrels`` maps split -> qrels).

    Example:
        >>> write_beir("my-set", {"d1": {"title": "", "text": "Paris"}}, {"q1": "France?"},
        ...            {"test": {"q1": {"d1": 1}}})  # doctest: +SKIP
    """
    root = Path(directory)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc_id, doc in corpus.items():
            row = {"_id": doc_id, "title": doc.get("title", ""), "text": doc["text"]}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as out:
        for qid, text in queries.items():
            out.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    for split, split_qrels in qrels.items():
        with (root / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as out:
            out.write("query-id\tcorpus-id\tscore\n")
            for qid, judged in split_qrels.items():
                for doc_id, grade in judged.items():
                    out.write(f"{qid}\t{doc_id}\t{grade}\n")


def check_queries(queries: object) -> dict[str, str]:
    """``queries`` as ``{qid: text}``, or a ``ValueError`` saying what is wrong."""
    if not isinstance(queries, Mapping):
        msg = f"queries must be a dict {{query_id: text}}, got {type(queries).__name__}."
        raise ValueError(msg)
    bad = [qid for qid, text in queries.items() if not isinstance(qid, str)
           or not isinstance(text, str) or not text.strip()]
    if bad:
        msg = (f"queries must map string ids to non-empty texts; these do not: {few(bad)}.")
        raise ValueError(msg)
    return dict(queries)


def check_qrels(qrels: object, queries: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """``qrels`` as ``{qid: {doc_id: grade}}`` with integer grades, every qid in ``queries``
    and at least one relevant (grade > 0) document overall.

    Raises:
        ValueError: empty qrels, a wrong shape, or query ids not in ``queries`` (a few named).

    Example:
        >>> check_qrels({"q1": {"d1": 1}}, {"q1": "a question"})
        {'q1': {'d1': 1}}
    """
    if not isinstance(qrels, Mapping):
        msg = f"qrels must be a dict {{query_id: {{doc_id: grade}}}}, got {type(qrels).__name__}."
        raise ValueError(msg)
    out: dict[str, dict[str, int]] = {}
    for qid, judged in qrels.items():
        if not isinstance(judged, Mapping) or not all(
                isinstance(d, str) and isinstance(g, int) and not isinstance(g, bool)
                for d, g in judged.items()):
            msg = (f"qrels[{qid!r:.60}] must be a dict {{doc_id: int grade}}, got "
                   f"{judged!r:.80}.")
            raise ValueError(msg)
        if judged:
            out[str(qid)] = dict(judged)
    if not any(g > 0 for judged in out.values() for g in judged.values()):
        msg = ("qrels are empty (no query has a document with a grade > 0); pass "
               "{query_id: {doc_id: grade}} with at least one relevant document.")
        raise ValueError(msg)
    unknown = out.keys() - queries.keys()
    if unknown:
        msg = (f"qrels name {len(unknown)} query id(s) that are not in queries: {few(unknown)}; "
               "give every judged query its text.")
        raise ValueError(msg)
    return out
