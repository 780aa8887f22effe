"""Client mode for rerankers: ``BGEReranker``'s methods, answered by ``POST /v1/rerank``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.inputs import validate_texts
from .http import RemoteModel

__all__ = ["RemoteReranker"]


class RemoteReranker(RemoteModel):
    """``BGEReranker.compute_score`` and ``rerank`` over HTTP; same scores as in-process.

    Args:
        base_url: the server, e.g. ``"http://127.0.0.1:8080"``.
        model: a served reranker id (or its last path component); ``None`` when one is served.
        api_key: the server's key (default: ``$BGE_INTEGRATIONS_API_KEY``).
        timeout: seconds per connect / read.
        max_retries: retries of connection failures (never of requests the server got).
        batch_size: most documents per request.
        normalize: sigmoid scores (0..1) by default in every call (``None``: the server's
            setting for the model, raw logits unless it was started otherwise).

    Example:
        >>> rr = RemoteReranker("http://127.0.0.1:8080", "bge-reranker-v2-m3")  # doctest: +SKIP
        >>> rr.rerank("what is a panda?", ["hi", "The giant panda is a bear."])  # doctest: +SKIP
        [(1, 5.26...), (0, -8.1...)]
    """

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 3, batch_size: int = 256,
                 normalize: bool | None = None) -> None:
        super().__init__(base_url, model, api_key=api_key, timeout=timeout,
                         max_retries=max_retries, batch_size=batch_size)
        self.normalize = normalize

    def compute_score(self, pairs: Sequence[tuple[str, str]] | tuple[str, str], *,
                      normalize: bool | None = None) -> np.ndarray:
        """One float32 score per ``(query, passage)`` pair, in input order (one request per
        distinct query and ``batch_size`` passages)."""
        if (isinstance(pairs, tuple) and len(pairs) == 2
                and all(isinstance(s, str) for s in pairs)):
            pairs = [pairs]
        items = list(pairs) if isinstance(pairs, Sequence) and not isinstance(pairs, str) \
            else None
        if items is None or not all(isinstance(p, tuple | list) and len(p) == 2
                                    and all(isinstance(s, str) for s in p) for p in items):
            msg = "pairs must be a list of (query, passage) string pairs."
            raise TypeError(msg)
        scores = np.zeros(len(items), dtype=np.float32)
        by_query: dict[str, list[int]] = {}
        for i, (query, _) in enumerate(items):
            by_query.setdefault(query, []).append(i)
        for query, positions in by_query.items():
            got = self._scores(query, [items[i][1] for i in positions],
                               self.normalize if normalize is None else normalize)
            scores[positions] = got
        return scores

    def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None
               ) -> list[tuple[int, float]]:
        """``(index, score)`` of the best ``top_n`` documents (all when ``None``), best first."""
        if not isinstance(query, str):
            msg = f"query must be a str, got {type(query).__name__}."
            raise TypeError(msg)
        docs = validate_texts(documents, name="documents")
        if top_n is not None and (not isinstance(top_n, int) or top_n <= 0):
            msg = f"top_n must be a positive int or None, got {top_n!r}."
            raise ValueError(msg)
        if not docs:
            return []
        scores = self._scores(query, docs, self.normalize)
        order = sorted(range(len(docs)), key=lambda i: (-float(scores[i]), i))
        return [(i, float(scores[i])) for i in order[:top_n]]

    def _scores(self, query: str, docs: list[str], normalize: bool | None) -> np.ndarray:
        out = np.zeros(len(docs), dtype=np.float32)
        for start in range(0, len(docs), self.batch_size):
            body: dict[str, Any] = {"query": query,
                                    "documents": docs[start:start + self.batch_size]}
            if self.model_name is not None:
                body["model"] = self.model_name
            if normalize is not None:
                body["normalize"] = normalize
            for item in self.client.post("/v1/rerank", body)["results"]:
                out[start + item["index"]] = item["relevance_score"]
        return out
