"""Errors a request can cause, in OpenAI's JSON shape: ``{"error": {"message", "type", "param",
"code"}}`` (the ``openai`` client raises its matching exception class from it)."""

from __future__ import annotations

from typing import Any

__all__ = ["APIError", "error_body"]

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          413: "request_too_large", 499: "client_closed_request", 503: "service_unavailable"}


class APIError(Exception):
    """A request the server refuses, with its HTTP status and the request field at fault.

    Args:
        status: HTTP status code.
        message: what was wrong and how to fix it.
        param: the request field at fault (``None`` when no single field is).
        code: a short machine-readable code (``model_not_found``, ...).
    """

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
