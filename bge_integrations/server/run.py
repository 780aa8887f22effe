"""Run the app under uvicorn (what ``bge-integrations serve`` does)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import uvicorn

from .app import ServerSettings, create_app
from .models import ServedModel

__all__ = ["serve", "serve_in_thread"]


def serve(models: Sequence[ServedModel | str], *, host: str = "127.0.0.1", port: int = 8080,
          settings: ServerSettings | None = None, graceful_timeout: float = 30.0,
          log_level: str = "info") -> None:
    """Serve ``models`` until SIGINT/SIGTERM; in-flight requests finish before it stops.

    Args:
        models: hub ids / local directories, or :class:`ServedModel` rows.
        host: interface to bind (loopback by default; ``0.0.0.0`` exposes it).
        port: TCP port.
        settings: limits, API key, batching (:class:`ServerSettings`).
        graceful_timeout: most seconds to wait for in-flight requests on shutdown.
        log_level: uvicorn's log level.

    Example:
        >>> serve(["BAAI/bge-small-en-v1.5"], port=8080)  # doctest: +SKIP
    """
    app = create_app(models, settings)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=graceful_timeout, lifespan="on")
    uvicorn.Server(config).run()


@contextmanager
def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0,
                    graceful_timeout: float = 30.0, log_level: str = "warning"
                    ) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread; yields its base URL.

    ``port=0`` takes a free port. On exit the server stops as on SIGTERM: in-flight requests
    finish first. For notebooks, tests and benchmarks; production runs :func:`serve`.

    Example:
        >>> with serve_in_thread(create_app(["BAAI/bge-small-en-v1.5"])) as url:  # doctest: +SKIP
        ...     httpx.post(f"{url}/v1/embeddings", json={"input": "hi"})
    """
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=graceful_timeout)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bge-uvicorn", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            msg = "the server stopped while starting; see its log above."
            raise RuntimeError(msg)
        thread.join(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join()
