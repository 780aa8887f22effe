"""The ASGI app: OpenAI-compatible embeddings, BGE-M3 sparse and ColBERT, models, health, metrics.

The app calls the core: every served model is a core embedder whose calls share forward
passes through its :class:`~bge_integrations.core.batcher.Batcher`; the endpoints turn JSON
into embedder calls and arrays back into JSON. Nothing a request names is executed or opened:
``model`` is looked up among the models the server was started with.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.batcher import CallScope, TooManyTokensError, call_scope
from ..core.m3 import BGEM3Embedder
from .errors import APIError, error_body
from .metrics import Metrics
from .middleware import Guard, Metered
from .models import LoadedServedModel, ModelPool, ServedModel
from .schemas import (
    ColbertRequest,
    EmbeddingRequest,
    RerankRequest,
    SparseRequest,
    documents_of,
    texts_of,
)

__all__ = ["ServerSettings", "create_app"]

T = TypeVar("T")
_SIDES = {"query": "encode_queries", "document": "encode_documents", "raw": "encode"}


@dataclass(frozen=True)
class ServerSettings:
    """Limits and options of a server.

    Args:
        max_inputs: most strings in one request (413 above).
        max_tokens_per_request: most tokens (after truncation) in one request (413 above).
        max_body_bytes: most bytes in one request body (413 before the rest is read).
        api_key: when set, every request but ``/health`` needs ``Authorization: Bearer KEY``.
        batch_wait_ms: how long a request waits for others to share its forward pass.
        max_concurrency: requests handled at once (threads waiting on the batcher).

    Example:
        >>> ServerSettings(max_inputs=512, api_key="secret").max_inputs
        512
    """

    max_inputs: int = 2048
    max_tokens_per_request: int = 262_144
    max_body_bytes: int = 32 * 1024 * 1024
    api_key: str | None = None
    batch_wait_ms: float = 2.0
    max_concurrency: int = 256

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_tokens_per_request", "max_body_bytes",
                     "max_concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                msg = f"ServerSettings.{name} must be a positive int, got {value!r}."
                raise ValueError(msg)
        if not isinstance(self.batch_wait_ms, int | float) or self.batch_wait_ms < 0:
            msg = f"ServerSettings.batch_wait_ms must be >= 0, got {self.batch_wait_ms!r}."
            raise ValueError(msg)
        if self.api_key is not None and not (isinstance(self.api_key, str) and self.api_key):
            msg = "ServerSettings.api_key must be a non-empty string or None."
            raise ValueError(msg)


class JSON(Response):
    """orjson response: numpy arrays are written directly (float32 at its shortest form)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class Service:
    """What a running app holds: models, metrics, the threads that wait on the batchers."""

    def __init__(self, models: Sequence[ServedModel], settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        loaded = [m.load() for m in models]
        self.pool = ModelPool(loaded)
        self.batchers = []
        for model in loaded:
            if "rerank" in model.outputs:  # pairs are scored per request (no shared rounds)
                continue
            batcher = model.embedder.share_batches(
                max_wait_ms=settings.batch_wait_ms,
                max_tokens_per_call=settings.max_tokens_per_request)
            self.batchers.append(batcher)
            self.metrics.watch_rounds(model.id, lambda b=batcher: b.rounds)
        self.executor = ThreadPoolExecutor(settings.max_concurrency,
                                           thread_name_prefix="bge-request")

    def close(self) -> None:
        """Finish queued work, then stop the threads (in-flight requests are done by now)."""
        for batcher in self.batchers:
            batcher.close()
        self.executor.shutdown(wait=True)

    async def run(self, request: Request, model: LoadedServedModel, endpoint: str,
                  n_texts: int, fn: Callable[[], T], param: str = "input") -> tuple[T, int]:
        """``fn()`` in a request thread; returns its result and the tokens it ran.

        A client that disconnects first gets its queued texts dropped (nothing stays queued).
        Core errors become 4xx answers naming ``param``.
        """
        scope = CallScope()

        def work() -> T:
            with call_scope(scope):
                return fn()

        task = asyncio.get_running_loop().run_in_executor(self.executor, work)
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not task.done():
            scope.cancel()
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self.metrics.cancelled.inc()
            raise APIError(499, "the client closed the connection before the answer.")
        try:
            result = task.result()
        except TooManyTokensError as exc:
            raise APIError(413, str(exc), param) from None
        except CancelledError:
            raise APIError(499, "the request was cancelled.") from None
        except (ValueError, TypeError) as exc:
            raise APIError(400, str(exc), param) from None
        self.metrics.texts.labels(model.id, endpoint).inc(n_texts)
        self.metrics.tokens.labels(model.id).inc(scope.tokens)
        return result, scope.tokens


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the body is already read: only a disconnect or the
    end of the response can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _service(request: Request) -> Service:
    return request.app.state.service


def _encode(embedder: Any, side: str, texts: list[str], **outputs: bool) -> Any:
    return getattr(embedder, _SIDES[side])(texts, **outputs)


def _vector(vec: np.ndarray, fmt: str) -> np.ndarray | str:
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(vec, dtype="<f4").tobytes()).decode()
    return vec


def _usage(tokens: int) -> dict[str, int]:
    return {"prompt_tokens": tokens, "total_tokens": tokens}


def _sparse(weights: dict[int, float]) -> dict[str, list]:
    return {"indices": list(weights), "values": list(weights.values())}


def _dimensions(model: LoadedServedModel, dimensions: int | None) -> int | None:
    dim = model.embedder.dim
    if dimensions is None or dimensions == dim:
        return None
    if dimensions > dim:
        msg = f"dimensions={dimensions} is over {model.id!r}'s {dim}; use at most {dim}."
        raise APIError(400, msg, "dimensions")
    if not model.matryoshka:
        msg = (f"{model.id!r} was not trained to be cut (no Matryoshka training): "
               f"dimensions must be {dim} or left out.")
        raise APIError(400, msg, "dimensions")
    return dimensions


def _cut(vectors: np.ndarray, dims: int, normalize: bool) -> np.ndarray:
    cut = np.ascontiguousarray(vectors[:, :dims])
    if normalize:
        cut /= np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
    return cut


def _listing(model: LoadedServedModel, tokens: int, data: list[dict[str, Any]]) -> JSON:
    """The OpenAI list envelope of an embeddings answer."""
    return JSON({"object": "list", "data": data, "model": model.id, "usage": _usage(tokens)})


async def _m3_outputs(request: Request, body: SparseRequest | ColbertRequest, output: str,
                      **heads: bool) -> tuple[LoadedServedModel, Any, int]:
    """The BGE-M3 model a sparse / ColBERT request names, its outputs and the tokens run."""
    service = _service(request)
    model = service.pool.find(body.model, output)
    texts = texts_of(body.input, service.settings.max_inputs)
    out, tokens = await service.run(
        request, model, output, len(texts),
        lambda: _encode(model.embedder, body.input_type, texts, **heads))
    return model, out, tokens


def _with_extras(item: dict[str, Any], out: Any, i: int,
                 body: SparseRequest | ColbertRequest) -> dict[str, Any]:
    """``item`` with the dense (and sparse) outputs the request also asked for."""
    if body.return_dense:
        item["dense"] = _vector(out.dense[i], body.encoding_format)
    if getattr(body, "return_sparse", False):
        item["sparse"] = _sparse(out.sparse[i])
    return item


def create_app(models: Sequence[ServedModel | str],
               settings: ServerSettings | None = None) -> FastAPI:
    """The service as an ASGI app; models load when it starts (lifespan), not here.

    Args:
        models: what to serve: hub ids / local directories, or :class:`ServedModel` rows.
        settings: limits and options (:class:`ServerSettings`).

    Example:
        >>> app = create_app(["BAAI/bge-small-en-v1.5"])
        >>> # uvicorn.run(app, host="127.0.0.1", port=8080)
    """
    served = [m if isinstance(m, ServedModel) else ServedModel(m) for m in models]
    if not served:
        msg = "serve at least one model: create_app(['BAAI/bge-small-en-v1.5'])."
        raise ValueError(msg)
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = Service(served, settings)
        try:
            yield
        finally:
            app.state.service.close()

    app = FastAPI(title="bge-integrations", lifespan=lifespan, default_response_class=JSON)
    _add_error_handlers(app)
    _add_routes(app)
    app.add_middleware(Guard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)
    paths = frozenset(r.path for r in app.routes)  # type: ignore[attr-defined]
    app.add_middleware(Metered, metrics=lambda: getattr(app.state, "service", None) and
                       app.state.service.metrics, paths=paths)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSON:
        return JSON(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSON:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ())][1:]
        if first.get("type") == "json_invalid":
            reason = first.get("ctx", {}).get("error", "parse error")
            msg = f"the body is not valid JSON ({reason})."
            return JSON(error_body(400, msg, "body"), status_code=400)
        param = ".".join(loc) or "body"
        msg = f"{param}: {first.get('msg', 'invalid value')}"
        if first.get("type") == "extra_forbidden":
            msg = f"{param}: unknown field; see the endpoint's fields in /docs."
        return JSON(error_body(400, msg, param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSON:
        return JSON(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code)


def _add_routes(app: FastAPI) -> None:  # noqa: C901 - one small function per endpoint
    @app.get("/health")
    async def health(request: Request) -> JSON:
        """Liveness and readiness: the served model ids."""
        return JSON({"status": "ok", "models": [m.id for m in _service(request).pool.models]})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus metrics."""
        return Response(_service(request).metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def list_models(request: Request) -> JSON:
        """The served models (OpenAI's list, with dim, outputs and limits)."""
        return JSON({"object": "list",
                     "data": [m.card() for m in _service(request).pool.models]})

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest, request: Request) -> JSON:
        """Dense embeddings, OpenAI's shape; ``input_type`` picks the query instruction."""
        service = _service(request)
        model = service.pool.find(body.model, "dense")
        texts = texts_of(body.input, service.settings.max_inputs)
        dims = _dimensions(model, body.dimensions)
        embedder = model.embedder
        m3 = {"dense": True, "sparse": False} if isinstance(embedder, BGEM3Embedder) else {}

        def work() -> np.ndarray:
            out = _encode(embedder, body.input_type, texts, **m3)
            return out.dense if m3 else out

        vectors, tokens = await service.run(request, model, "embeddings", len(texts), work)
        if dims is not None:
            vectors = _cut(vectors, dims, embedder.normalize)
        return _listing(model, tokens, [
            {"object": "embedding", "index": i, "embedding": _vector(v, body.encoding_format)}
            for i, v in enumerate(vectors)])

    @app.post("/v1/embeddings/sparse")
    async def sparse(body: SparseRequest, request: Request) -> JSON:
        """BGE-M3 lexical weights: ``indices`` (token ids) and ``values`` per text."""
        model, out, tokens = await _m3_outputs(request, body, "sparse", dense=body.return_dense,
                                               sparse=True)
        return _listing(model, tokens, [
            _with_extras({"object": "sparse_embedding", "index": i, **_sparse(weights)},
                         out, i, body) for i, weights in enumerate(out.sparse)])

    @app.post("/v1/embeddings/colbert")
    async def colbert(body: ColbertRequest, request: Request) -> JSON:
        """BGE-M3 ColBERT vectors: one row per token after CLS, with their ``shape``."""
        model, out, tokens = await _m3_outputs(request, body, "colbert", dense=body.return_dense,
                                               sparse=body.return_sparse, colbert=True)
        return _listing(model, tokens, [
            _with_extras({"object": "colbert_embedding", "index": i, "shape": list(vecs.shape),
                          "embedding": _vector(vecs, body.encoding_format)}, out, i, body)
            for i, vecs in enumerate(out.colbert)])

    @app.post("/v1/rerank")
    async def rerank(body: RerankRequest, request: Request) -> JSON:
        """Cohere / Jina shape: ``results`` of ``index`` and ``relevance_score``, best first."""
        service = _service(request)
        model = service.pool.find(body.model, "rerank")
        docs = documents_of(body.documents, service.settings.max_inputs)
        reranker = model.core

        def work() -> np.ndarray:
            scores = reranker.compute_score([(body.query, d) for d in docs],
                                            normalize=body.normalize)
            return scores[-1] if scores.ndim == 2 else scores  # the deepest cutoff layer

        scores, _ = await service.run(request, model, "rerank", len(docs), work, "documents")
        order = sorted(range(len(docs)), key=lambda i: (-float(scores[i]), i))
        results = []
        for i in order[:body.top_n]:
            item: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
            if body.return_documents:
                item["document"] = {"text": docs[i]}
            results.append(item)
        return JSON({"object": "list", "model": model.id, "results": results})
