"""Prometheus metrics of one server (its own registry: several apps in one process, as in
tests or Ray replicas sharing a worker, never collide)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Requests, latency, texts, tokens, cancellations and engine rounds."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("bge_requests", "HTTP requests by path and status",
                                ["path", "status"], registry=r)
        self.latency = Histogram("bge_request_seconds", "Request latency by path", ["path"],
                                 buckets=_BUCKETS, registry=r)
        self.in_flight = Gauge("bge_requests_in_flight", "Requests being answered", registry=r)
        self.texts = Counter("bge_texts", "Texts embedded or scored", ["model", "endpoint"],
                             registry=r)
        self.tokens = Counter("bge_tokens", "Tokens run through the model", ["model"],
                              registry=r)
        self.cancelled = Counter("bge_requests_cancelled",
                                 "Requests whose client left before the answer; their queued "
                                 "texts were dropped", registry=r)
        self.rounds = Gauge("bge_engine_rounds", "Engine calls shared by concurrent requests",
                            ["model"], registry=r)

    def watch_rounds(self, model: str, rounds: Callable[[], int]) -> None:
        """Report a batcher's round count under ``model``."""
        self.rounds.labels(model).set_function(rounds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
