"""Run the app under uvicorn (what ``bge-integrations serve`` does)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import uvicorn

from .app import ServerSettings, create_app
from .models import ServedModel

__all__ = ["serve", "BackgroundServer", "KEEP_ALIVE_S"]

#: seconds an idle keep-alive connection stays open. Longer than clients' own idle limit
#: (httpx: 5 s) so that the client, not the server, closes idle connections: a server that
#: closes first races a client reusing the connection, and that request fails unanswered.
KEEP_ALIVE_S = 30


def _config(app: Any, host: str, port: int, graceful_timeout: float, log_level: str
            ) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                          timeout_graceful_shutdown=graceful_timeout,
                          timeout_keep_alive=KEEP_ALIVE_S)


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
    uvicorn.Server(_config(create_app(models, settings), host, port, graceful_timeout,
                           log_level)).run()


class BackgroundServer:
    """``app`` under uvicorn in a background thread (notebooks, tests, benchmarks).

    ``port=0`` takes a free port. :meth:`stop` (or leaving the ``with`` block) stops it as
    SIGTERM does: in-flight requests finish first. Production runs :func:`serve`.

    Example:
        >>> server = BackgroundServer(create_app(["BAAI/bge-small-en-v1.5"]))  # doctest: +SKIP
        >>> url = server.start()  # 'http://127.0.0.1:41873'  # doctest: +SKIP
        >>> server.stop()  # doctest: +SKIP
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 graceful_timeout: float = 30.0, log_level: str = "warning") -> None:
        self._server = uvicorn.Server(_config(app, host, port, graceful_timeout, log_level))
        self._thread: threading.Thread | None = None
        self.url: str | None = None

    def start(self) -> str:
        """Start serving; returns the base URL once the models are loaded."""
        if self._thread is not None:
            msg = "this BackgroundServer was already started."
            raise RuntimeError(msg)
        self._thread = threading.Thread(target=self._server.run, name="bge-uvicorn",
                                        daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                msg = "the server stopped while starting; see its log above."
                raise RuntimeError(msg)
            self._thread.join(0.02)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        """Stop after the in-flight requests (the models' queued work finishes too)."""
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
