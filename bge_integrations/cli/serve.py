"""``bge-integrations serve``: the embedding service (OpenAI-compatible) under uvicorn.

Example:
    $ bge-integrations serve --model BAAI/bge-small-en-v1.5 --model BAAI/bge-m3 --port 8080
    $ BGE_INTEGRATIONS_API_KEY=secret bge-integrations serve --model BAAI/bge-m3
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..core.hardware import DTYPES
from ..core.registry import Pooling
from ..offline import go_offline_if_unreachable, looks_local
from .argtypes import positive_int

__all__ = ["add_parser", "API_KEY_ENV"]

#: environment variable read when --api-key is not given
API_KEY_ENV = "BGE_INTEGRATIONS_API_KEY"


def add_parser(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "serve", help="serve models over HTTP (OpenAI-compatible embeddings, sparse, colbert)",
        description="Serve embedding models over HTTP: POST /v1/embeddings (OpenAI's shape), "
                    "/v1/embeddings/sparse and /v1/embeddings/colbert (BGE-M3), GET /v1/models, "
                    "/health, /metrics. Concurrent requests share forward passes. Stops on "
                    "SIGINT/SIGTERM after finishing the requests in flight.")
    parser.add_argument("--model", action="append", required=True, metavar="MODEL",
                        help="hub id or local directory to serve (repeatable); requests name "
                             "it by this string or its last path component")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument("--api-key", default=None,
                        help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}, "
                             "else no key)")
    parser.add_argument("--matryoshka", action="append", default=[], metavar="MODEL",
                        help="let `dimensions` cut this model's vectors (repeatable; known "
                             "Matryoshka models such as Qwen3-Embedding need no flag)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-inputs", type=positive_int, default=2048,
                        help="most strings per request (default 2048)")
    limits.add_argument("--max-tokens", type=positive_int, default=262_144,
                        help="most tokens per request (default 262144)")
    limits.add_argument("--max-body-bytes", type=positive_int, default=32 * 1024 * 1024,
                        help="most bytes per request body (default 32 MiB)")
    limits.add_argument("--batch-wait-ms", type=float, default=2.0,
                        help="how long a request waits for others to share its forward pass")
    limits.add_argument("--graceful-timeout", type=float, default=30.0,
                        help="seconds to finish in-flight requests on shutdown")
    model = parser.add_argument_group("model")
    model.add_argument("--device", default="auto",
                       help="auto, cpu, cuda, cuda:N or mps; several: cuda:0,cuda:1")
    model.add_argument("--dtype", default="auto", choices=DTYPES, help="compute dtype")
    model.add_argument("--pooling", choices=[p.value for p in Pooling],
                       help="pooling for models that are not in the registry")
    model.add_argument("--batch-size", type=positive_int, help="most texts per forward pass")
    model.add_argument("--trust-remote-code", action="store_true",
                       help="allow the checkpoints' own modelling code")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the models (errors are reported before the port opens), then serve."""
    try:
        from ..server import ServedModel, ServerSettings, serve
    except ImportError as exc:
        msg = (f"serving needs the server extra ({exc.name} is missing): "
               'pip install "bge-integrations[server]".')
        raise ValueError(msg) from None
    for name in args.model:
        if looks_local(name) and not os.path.isdir(os.path.expanduser(name)):
            msg = f"model directory {name!r} does not exist."
            raise FileNotFoundError(msg)
    if not all(looks_local(name) for name in args.model) and go_offline_if_unreachable():
        print("bge-integrations: note: the Hugging Face hub cannot be reached; using local "
              "copies only.", file=sys.stderr)
    unknown = set(args.matryoshka) - set(args.model)
    if unknown:
        msg = f"--matryoshka names models that are not served: {sorted(unknown)}."
        raise ValueError(msg)
    devices = args.device.split(",")
    options: dict[str, Any] = {"device": devices[0] if len(devices) == 1 else devices,
                               "dtype": args.dtype,
                               "trust_remote_code": args.trust_remote_code}
    if args.pooling is not None:
        options["pooling"] = args.pooling
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    served = [ServedModel(name, options, True if name in args.matryoshka else None)
              for name in dict.fromkeys(args.model)]
    for model in served:
        model.load()  # fail here with one error line; the app reuses the cached weights
    settings = ServerSettings(
        max_inputs=args.max_inputs, max_tokens_per_request=args.max_tokens,
        max_body_bytes=args.max_body_bytes,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        batch_wait_ms=args.batch_wait_ms)
    serve(served, host=args.host, port=args.port, settings=settings,
          graceful_timeout=args.graceful_timeout)
    return 0
