"""ASGI middleware: refuse a request before its body is read (API key, body size) and meter
every response. Plain ASGI (no ``BaseHTTPMiddleware``), so the endpoints still see the client
disconnect."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from .errors import error_body
from .metrics import Metrics

__all__ = ["Guard", "Metered"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: paths answered without an API key (load-balancer probes)
OPEN_PATHS = frozenset({"/health"})


class _BodyTooLarge(Exception):
    pass


async def send_error(send: Send, status: int, message: str, param: str | None = None,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = orjson.dumps(error_body(status, message, param))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """401 without the API key (``Authorization: Bearer KEY``); 413 for a body over
    ``max_body_bytes``: at once from its ``Content-Length``, or as soon as the bytes received
    pass the limit (chunked uploads) - the rest is never read."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.api_key is not None and scope["path"] not in OPEN_PATHS:
            auth = headers.get(b"authorization", b"")
            scheme, _, given = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(),
                                                                      self.api_key):
                await send_error(send, 401, "missing or wrong API key: send the header "
                                 "'Authorization: Bearer <key>' with this server's key.",
                                 headers=((b"www-authenticate", b"Bearer"),))
                return
        limit = self.max_body_bytes
        close = ((b"connection", b"close"),)  # the rest of a refused body is never read
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_error(send, 413, f"the request body holds {int(declared)} bytes, over "
                             f"this server's limit of {limit}; send fewer or shorter inputs.",
                             headers=close)
            return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not refused:
                    refused = True
                    await send_error(send, 413, f"the request body is over this server's "
                                     f"limit of {limit} bytes; send fewer or shorter inputs.",
                                     headers=close)
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # after a 413, the app's own answer to the broken body is dropped
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            pass


class Metered:
    """Counts every response by path and status and times it (Prometheus)."""

    def __init__(self, app: ASGIApp, *, metrics: Callable[[], Metrics | None],
                 paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics() if scope["type"] == "http" else None
        if metrics is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in self.paths else "other"
        status = 500
        start = time.perf_counter()

        async def metered_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, metered_send)
        finally:
            metrics.in_flight.dec()
            metrics.requests.labels(path, str(status)).inc()
            metrics.latency.labels(path).observe(time.perf_counter() - start)
