"""``bge-integrations rerank QUERY FILE``: rank a file's texts against a query with a reranker.

Reads lines, JSONL, CSV or TSV (like ``embed``) and writes one JSON line per text, best first:
``{"rank", "index", "id", "score", "text", "metadata"}``.

Example:
    $ bge-integrations rerank "what is a panda?" passages.txt -k 3
    $ bge-integrations rerank "what is BGE?" docs.jsonl --model BAAI/bge-reranker-v2-gemma
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..core.hardware import DTYPES
from ..core.rerank import DEFAULT_RERANKER, BGEReranker
from ..core.rerank_registry import RerankerKind
from .argtypes import positive_int
from .textio import read_records

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add the ``rerank`` subcommand to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "rerank", help="rank the texts of a file against a query with a reranker",
        description="Score every text of a file against QUERY with a BGE reranker and print "
                    "them best first as JSON lines {rank, index, id, score, text, metadata}.")
    parser.add_argument("query", help="the query")
    parser.add_argument("input", help="a .txt (one text per line), .jsonl, .csv or .tsv file; "
                                      "- reads standard input")
    parser.add_argument("-k", type=positive_int, help="print only the k best (default: all)")
    parser.add_argument("--input-format", choices=["text", "jsonl", "csv", "tsv"],
                        help="override the format implied by the file suffix")
    parser.add_argument("--text-field", default="text", help="JSONL key / CSV column of the text")
    parser.add_argument("--id-field", default="id", help="JSONL key / CSV column of the id")
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=DEFAULT_RERANKER,
                       help=f"hub id or local directory (default: {DEFAULT_RERANKER})")
    group.add_argument("--kind", choices=[k.value for k in RerankerKind],
                       help="reranker kind of a model that is not in the registry")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    group.add_argument("--dtype", default="auto", choices=DTYPES, help="compute dtype")
    group.add_argument("--batch-size", type=positive_int, default=128,
                       help="most pairs per forward pass")
    group.add_argument("--max-length", type=positive_int, default=512,
                       help="token limit of a (query, text) pair")
    group.add_argument("--normalize", action="store_true", help="sigmoid scores (0..1)")
    group.add_argument("--trust-remote-code", action="store_true",
                       help="allow the checkpoint's own modelling code")
    group.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Rerank the file's texts and print them, best first."""
    records = read_records(args.input, fmt=args.input_format, text_field=args.text_field,
                           id_field=args.id_field)
    reranker = BGEReranker(args.model, kind=args.kind, device=args.device, dtype=args.dtype,
                           batch_size=args.batch_size, max_length=args.max_length,
                           normalize=args.normalize, trust_remote_code=args.trust_remote_code,
                           show_progress=args.progress)
    ranked = reranker.rerank(args.query, [r.text for r in records], top_n=args.k)
    for rank, (i, score) in enumerate(ranked, 1):
        record = records[i]
        sys.stdout.write(json.dumps({"rank": rank, "index": i, "id": record.id, "score": score,
                                     "text": record.text, "metadata": record.metadata},
                                    ensure_ascii=False) + "\n")
    return 0
