"""``bge-integrations ingest``: embed a file on Ray Data and load it into Qdrant, Parquet or an
index, with Ray's progress bars and a summary line.

Example:
    $ bge-integrations ingest docs.jsonl --model BAAI/bge-m3 --to qdrant://localhost:6333/docs
    $ bge-integrations ingest docs.parquet --model BAAI/bge-m3 --to out/ --workers 4
    $ bge-integrations ingest docs.jsonl --model BAAI/bge-m3 --to-index my-index \\
          --ray-address auto --gpus-per-worker 1 --dtype float16
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..core.hardware import DTYPES
from .argtypes import positive_float, positive_int

__all__ = ["add_parser", "parse_qdrant_target", "READERS"]

#: input suffix -> Ray Data reader
READERS = {".jsonl": "read_json", ".json": "read_json", ".csv": "read_csv", ".tsv": "read_csv",
           ".parquet": "read_parquet", ".txt": "read_text"}
QDRANT_API_KEY_ENV = "QDRANT_API_KEY"


def parse_qdrant_target(target: str) -> tuple[str, str]:
    """``qdrant://host:port/collection`` -> (``http://host:port``, collection).

    ``qdrants://`` means HTTPS. The API key comes from ``$QDRANT_API_KEY``.

    Example:
        >>> parse_qdrant_target("qdrant://localhost:6333/docs")
        ('http://localhost:6333', 'docs')
    """
    parsed = urlparse(target)
    collection = parsed.path.strip("/")
    if parsed.scheme not in ("qdrant", "qdrants") or not parsed.hostname or not collection \
            or "/" in collection:
        msg = (f"--to {target!r} is not a Qdrant target; write qdrant://host:port/collection "
               "(qdrants:// for HTTPS).")
        raise ValueError(msg)
    scheme = "https" if parsed.scheme == "qdrants" else "http"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{scheme}://{parsed.hostname}{port}", collection


def add_parser(sub: Any) -> None:
    """Add the ``ingest`` subcommand to ``bge-integrations``' subparsers."""
    parser = sub.add_parser(
        "ingest", help="embed a file on a Ray cluster into Qdrant, Parquet or an index",
        description="Embed every row of a file with Ray Data (one model per actor) and write "
                    "the vectors to a Qdrant collection, a Parquet directory or a saved index. "
                    "Every input column is kept (the Parquet output adds embedding, "
                    "sparse_indices/sparse_values for BGE-M3, colbert and num_tokens).")
    parser.add_argument("input", help="a .jsonl, .csv, .tsv, .parquet or .txt file, or a "
                                      "directory of .parquet files; local or a URI Ray reads "
                                      "(s3://..., gs://...)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="TARGET",
                        help="qdrant://host:port/collection (API key from $QDRANT_API_KEY), or a "
                             "directory to write Parquet files into")
    target.add_argument("--to-index", metavar="DIR",
                        help="build a saved index (hybrid for BGE-M3, dense otherwise) in DIR")
    parser.add_argument("--model", required=True, help="hub id or local directory")
    parser.add_argument("--tiny", action="store_true",
                        help="use a tiny random model of the same family (offline smoke runs)")
    parser.add_argument("--text-field", default="text", help="the text column (default: text)")
    parser.add_argument("--id-field", default="id",
                        help="the unique id column; Qdrant point ids and index ids derive from "
                             "it (default: id)")
    parser.add_argument("--side", choices=["document", "query"], default="document",
                        help="query: apply the model's query instruction (default document)")
    parser.add_argument("--colbert", action="store_true",
                        help="BGE-M3: also compute and store ColBERT token vectors (always on "
                             "with --to-index: a HybridIndex keeps them)")
    parser.add_argument("--pooling", help="pooling for a model that is not in the registry")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="compute dtype in the workers (auto: float16 on GPUs)")
    parser.add_argument("--output-dtype", choices=["float32", "float16"], default="float32",
                        help="precision of the stored vectors (Parquet output)")
    ray_group = parser.add_argument_group("Ray")
    ray_group.add_argument("--ray-address",
                           help="an existing cluster ('auto', or ray://host:10001); default: "
                                "start a local one for this run")
    ray_group.add_argument("--workers", type=positive_int,
                           help="actors, each with its own model (default: as many as fit)")
    ray_group.add_argument("--cpus-per-worker", type=positive_float,
                           help="CPUs reserved per actor (torch uses that many threads)")
    ray_group.add_argument("--gpus-per-worker", type=positive_float,
                           help="GPUs per actor, e.g. 1 (fractions share a GPU)")
    ray_group.add_argument("--batch-size", type=positive_int, default=256,
                           help="rows handed to an actor per call (default 256)")
    parser.set_defaults(handler=_cmd_ingest)


def _read(ray: Any, path: str, text_field: str) -> Any:
    """A Ray Dataset of ``path``: a local file or directory, or a URI Ray can read
    (``s3://bucket/docs.parquet``, ``gs://...``; without a suffix: a Parquet directory)."""
    remote = "://" in path
    source = Path(urlparse(path).path if remote else path).expanduser()
    if not remote and not source.exists():
        msg = f"input {path!r} does not exist."
        raise FileNotFoundError(msg)
    directory = source.is_dir() if not remote else not source.suffix
    suffix = ".parquet" if directory else source.suffix.lower()
    if suffix not in READERS:
        msg = (f"cannot tell the format of {path!r}: use a file ending in "
               f"{', '.join(READERS)}, or a directory of .parquet files.")
        raise ValueError(msg)
    location = path if remote else str(source)
    reader = getattr(ray.data, READERS[suffix])
    if suffix == ".tsv":
        from pyarrow import csv

        return reader(location, parse_options=csv.ParseOptions(delimiter="\t"))
    ds = reader(location)
    if suffix == ".txt" and text_field != "text":  # read_text names its one column "text"
        ds = ds.rename_columns({"text": text_field})
    return ds


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    """What identifies the model's outputs (for the driver's copy: index, fingerprint)."""
    return {"pooling": args.pooling} if args.pooling else {}


def _worker_options(args: argparse.Namespace) -> dict[str, Any]:
    """The core options of the actors: the model's, plus how they compute."""
    return {**_model_options(args), "dtype": args.dtype}


def _write(ds: Any, args: argparse.Namespace, model: str) -> tuple[str, int, int | None]:
    """Run the job into its target; (where it went, rows, tokens)."""
    from ..distributed import write_index, write_qdrant
    from ..distributed.columns import NUM_TOKENS
    from .indexes import new_index, save_index

    if args.to_index:
        index = new_index(model, device="cpu", **_model_options(args))
        summary = write_index(ds, index, id_column=args.id_field, text_column=args.text_field)
        save_index(index, args.to_index)
        return f"index {args.to_index}", summary.rows, summary.tokens
    if args.to.startswith(("qdrant://", "qdrants://")):
        url, collection = parse_qdrant_target(args.to)
        summary = write_qdrant(ds, collection, model=model, url=url,
                               api_key=os.environ.get(QDRANT_API_KEY_ENV),
                               id_column=args.id_field, text_column=args.text_field,
                               **_model_options(args))
        return args.to, summary.rows, summary.tokens
    if "://" in args.to:
        msg = f"--to {args.to!r}: use qdrant://host:port/collection or a local directory."
        raise ValueError(msg)
    ds.write_parquet(args.to)
    import pyarrow.parquet as pq

    tokens = pq.read_table(args.to, columns=[NUM_TOKENS]).column(NUM_TOKENS)
    return (f"Parquet files in {args.to}", len(tokens),
            int(tokens.to_numpy(zero_copy_only=False).sum()))


def _cause(exc: BaseException) -> BaseException:
    """The user-facing error inside Ray's wrappers (a worker's ValueError, ...)."""
    from ray.exceptions import RayError

    seen: set[int] = set()
    while isinstance(exc, RayError) and id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) or exc.__cause__
        if inner is None or inner is exc:
            break
        exc = inner
    return exc


def _cmd_ingest(args: argparse.Namespace) -> int:
    from ray.exceptions import RayError

    from ..core.m3_heads import is_m3_model
    from ..distributed import embed_dataset
    from ..distributed._ray import require_ray
    from .app import _model_name, _note

    ray = require_ray()
    model = _model_name(args)
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.ray_address, include_dashboard=False)
    context = ray.data.DataContext.get_current()
    wrapped = context.raise_original_map_exception
    context.raise_original_map_exception = True  # a worker's ValueError reaches the user
    try:
        start = time.perf_counter()
        colbert = args.colbert or bool(args.to_index and is_m3_model(model))
        ds = embed_dataset(
            _read(ray, args.input, args.text_field), model, column=args.text_field,
            side=args.side, colbert=colbert, concurrency=args.workers,
            batch_size=args.batch_size, num_cpus=args.cpus_per_worker,
            num_gpus=args.gpus_per_worker, id_column=args.id_field,
            output_dtype=args.output_dtype, token_counts=True, **_worker_options(args))
        where, rows, tokens = _write(ds, args, model)
        seconds = time.perf_counter() - start
    except RayError as exc:
        cause = _cause(exc)
        if isinstance(cause, RayError):
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            msg = f"the Ray job failed: {type(cause).__name__}: {first}"
            raise OSError(msg) from None
        raise cause from None
    finally:
        context.raise_original_map_exception = wrapped
        if started:
            ray.shutdown()
    _note(f"ingested {rows} rows ({tokens if tokens is not None else 'unknown'} tokens) in "
          f"{seconds:.1f} s: {rows / max(seconds, 1e-9):.1f} rows/s -> {where}.")
    return 0
