"""The HTTP side of client mode: one pooled connection, timeouts, retries on connection errors."""

from __future__ import annotations

import os
from typing import Any

import httpx

__all__ = ["ServiceClient", "ServiceError", "RemoteModel", "API_KEY_ENV"]

#: read when no api_key is given (the server reads the same variable)
API_KEY_ENV = "BGE_INTEGRATIONS_API_KEY"


class ServiceError(RuntimeError):
    """The service refused a request or failed; the message is the server's own.

    Attributes:
        status: HTTP status code.
        param: the request field at fault, when the server named one.
    """

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(f"{message} (HTTP {status}" + (f", field {param!r})" if param else ")"))
        self.status = status
        self.param = param


class ServiceClient:
    """Talks to a ``bge-integrations serve`` server.

    Connection failures (refused, connect timeout) are retried ``max_retries`` times with
    exponential back-off; nothing else is retried (a request the server received is never
    sent twice).

    Args:
        base_url: the server, e.g. ``"http://127.0.0.1:8080"`` (a trailing ``/v1`` is fine).
        api_key: sent as ``Authorization: Bearer ...`` (default: ``$BGE_INTEGRATIONS_API_KEY``).
        timeout: seconds for connecting and for each read.
        max_retries: connection attempts after the first.

    Example:
        >>> client = ServiceClient("http://127.0.0.1:8080")  # doctest: +SKIP
        >>> [m["id"] for m in client.models()]  # doctest: +SKIP
        ['BAAI/bge-small-en-v1.5']
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0,
                 max_retries: int = 3) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            msg = f"base_url must be an http(s) URL such as 'http://127.0.0.1:8080', got " \
                  f"{base_url!r}."
            raise ValueError(msg)
        if not isinstance(max_retries, int) or max_retries < 0:
            msg = f"max_retries must be an int >= 0, got {max_retries!r}."
            raise ValueError(msg)
        root = base_url.rstrip("/")
        self.base_url = root[:-3] if root.endswith("/v1") else root
        key = api_key or os.environ.get(API_KEY_ENV)
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers,
                                  timeout=httpx.Timeout(timeout),
                                  transport=httpx.HTTPTransport(retries=max_retries))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON, return the JSON answer; a refusal raises :class:`ServiceError`."""
        return self._answer(self._http.post(path, json=body))

    def get(self, path: str) -> dict[str, Any]:
        return self._answer(self._http.get(path))

    def models(self) -> list[dict[str, Any]]:
        """The served models' cards (``/v1/models``)."""
        return self.get("/v1/models")["data"]

    def model_card(self, model: str | None) -> dict[str, Any]:
        """The card of ``model`` (by id or last path component; ``None``: the only one)."""
        cards = self.models()
        if model is None and len(cards) == 1:
            return cards[0]
        for card in cards:
            if model in (card["id"], os.path.basename(os.path.normpath(card["id"]))):
                return card
        msg = (f"model {model!r} is not served at {self.base_url}; served: "
               f"{[c['id'] for c in cards]}.")
        raise ServiceError(404, msg, "model")

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def _answer(resp: httpx.Response) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ServiceError(resp.status_code, error.get("message") or resp.text[:200],
                               error.get("param"))
        return body


class RemoteModel:
    """What every remote model (embedders, reranker) holds: the connection, the served model's
    name, and how many inputs go in one request."""

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 3, batch_size: int = 256) -> None:
        if not isinstance(batch_size, int) or batch_size <= 0:
            msg = f"batch_size must be a positive int, got {batch_size!r}."
            raise ValueError(msg)
        self.client = ServiceClient(base_url, api_key=api_key, timeout=timeout,
                                    max_retries=max_retries)
        self.model_name = model
        self.batch_size = batch_size

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()
