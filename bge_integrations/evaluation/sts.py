"""Build the shipped STS-B retrieval set from the STS benchmark dev split.

The STS benchmark (``sts-dev.csv``: tab-separated, field 5 the 0-5 similarity score, fields 6
and 7 the two sentences) scores sentence pairs. As a retrieval set:

* corpus: every distinct second sentence (ids ``d0001``, ... in file order);
* queries: every distinct first sentence of a pair scored >= ``min_score`` (``q0001``, ...);
* qrels: grade 1 for the second sentence of each such pair (a query that occurs in several
  such pairs has several relevant documents);
* splits: the queries alternate between ``dev`` (1st, 3rd, ...) and ``test`` (2nd, 4th, ...).

Near-duplicates of a relevant sentence elsewhere in the corpus are unjudged (counted as not
relevant), as in any sparsely judged set. ``python -m bge_integrations.evaluation.sts
sts-dev.csv OUT_DIR`` rebuilds the shipped files.

Example:
    >>> from bge_integrations.evaluation.sts import build_sts_retrieval
    >>> build_sts_retrieval("tests/data/sts-dev.csv", "sts-retrieval")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
import sys

from .data import write_beir

__all__ = ["build_sts_retrieval", "MIN_SCORE"]

#: a pair scored at least this (0-5 scale) makes its second sentence relevant
MIN_SCORE = 4.0


def build_sts_retrieval(csv_path: str | os.PathLike[str], directory: str | os.PathLike[str],
                        min_score: float = MIN_SCORE) -> dict[str, int]:
    """Write the retrieval set derived from ``csv_path`` into ``directory`` (BEIR layout).

    Returns:
        Counts: ``documents``, ``queries``, ``dev`` and ``test`` (queries per split).
    """
    corpus: dict[str, dict[str, str]] = {}
    doc_of: dict[str, str] = {}
    queries: dict[str, str] = {}
    qid_of: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    with open(csv_path, encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            score, first, second = float(row[4]), row[5].strip(), row[6].strip()
            if second not in doc_of:
                doc_of[second] = f"d{len(doc_of) + 1:04d}"
                corpus[doc_of[second]] = {"title": "", "text": second}
            if score >= min_score:
                if first not in qid_of:
                    qid_of[first] = f"q{len(qid_of) + 1:04d}"
                    queries[qid_of[first]] = first
                qrels.setdefault(qid_of[first], {})[doc_of[second]] = 1
    order = list(qrels)
    splits = {"dev": {q: qrels[q] for q in order[0::2]},
              "test": {q: qrels[q] for q in order[1::2]}}
    write_beir(directory, corpus, queries, splits)
    return {"documents": len(corpus), "queries": len(queries), "dev": len(splits["dev"]),
            "test": len(splits["test"])}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m bge_integrations.evaluation.sts STS_DEV_CSV OUT_DIR",
              file=sys.stderr)
        raise SystemExit(2)
    counts = build_sts_retrieval(sys.argv[1], sys.argv[2])
    print(", ".join(f"{name} {count}" for name, count in counts.items()))
