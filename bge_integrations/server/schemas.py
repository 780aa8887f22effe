"""Request bodies of the service's endpoints (pydantic), and the check of the ``input`` field."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from .errors import APIError

__all__ = ["EmbeddingRequest", "SparseRequest", "ColbertRequest", "RerankRequest", "texts_of",
           "documents_of", "InputType"]

InputType = Literal["query", "document", "raw"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    """A served model: its ``--model`` string or that string's last path component."""
    input: Any = None
    """A string or a list of strings."""
    input_type: InputType = "document"
    """``query``: the model's query instruction applies; ``document``: passages (the default,
    what plain OpenAI clients send); ``raw``: the text as it is."""
    encoding_format: Literal["float", "base64"] = "float"
    """``base64``: little-endian float32 bytes, base64-encoded (what the openai client asks)."""


class EmbeddingRequest(_Request):
    """``POST /v1/embeddings`` (OpenAI's request, plus ``input_type``)."""

    dimensions: StrictInt | None = Field(default=None, gt=0)
    """Keep the first ``dimensions`` values (Matryoshka models only; re-normalized)."""
    user: StrictStr | None = None
    """Accepted for OpenAI compatibility and ignored."""


class SparseRequest(_Request):
    """``POST /v1/embeddings/sparse``: BGE-M3 lexical weights."""

    return_dense: StrictBool = False
    """Also return the dense vector of each text (same forward pass)."""


class ColbertRequest(_Request):
    """``POST /v1/embeddings/colbert``: BGE-M3 multi-vector (one vector per token)."""

    return_dense: StrictBool = False
    """Also return the dense vector of each text (same forward pass)."""
    return_sparse: StrictBool = False
    """Also return the lexical weights of each text (same forward pass)."""


class RerankRequest(BaseModel):
    """``POST /v1/rerank``: Cohere's and Jina's request (TEI's ``texts`` is accepted too)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: StrictStr | None = None
    """A served reranker: its ``--model`` string or that string's last path component."""
    query: StrictStr
    """The search query."""
    documents: Any = Field(default=None, alias="texts")
    """Strings, or objects with a ``text`` field."""
    top_n: StrictInt | None = Field(default=None, gt=0)
    """Return only the best ``top_n`` (default: all, best first)."""
    return_documents: StrictBool = False
    """Echo each document's text in the results."""
    normalize: StrictBool | None = None
    """Sigmoid scores in 0..1 (``None``: the reranker's own setting, raw logits by default)."""


def documents_of(value: object, max_inputs: int) -> list[str]:
    """The rerank request's documents as strings (``{"text": ...}`` objects unwrapped)."""
    if isinstance(value, list):
        value = [item["text"] if isinstance(item, dict) and isinstance(item.get("text"), str)
                 else item for item in value]
    try:
        return texts_of(value, max_inputs)
    except APIError as exc:
        param = exc.param.replace("input", "documents", 1) if exc.param else "documents"
        message = exc.message.replace("input", "documents", 1)
        raise APIError(exc.status, message, param) from None


def texts_of(value: object, max_inputs: int) -> list[str]:
    """The request's ``input`` as a non-empty list of at most ``max_inputs`` strings.

    Raises:
        APIError: 400 naming ``input`` (missing, wrong type, empty, token ids), 413 when it
            holds more than ``max_inputs`` strings.
    """
    if isinstance(value, str):
        return [value]
    if value is None:
        msg = "input is required: a string or a list of strings."
        raise APIError(400, msg, "input")
    if not isinstance(value, list):
        msg = f"input must be a string or a list of strings, got {_json_type(value)}."
        raise APIError(400, msg, "input")
    if not value:
        msg = "input must not be empty: send at least one string."
        raise APIError(400, msg, "input")
    if len(value) > max_inputs:
        msg = (f"input holds {len(value)} strings, over this server's limit of {max_inputs} "
               "per request; split it into several requests.")
        raise APIError(413, msg, "input")
    if all(_is_int(item) for item in value) or all(
            isinstance(item, list) and item and all(_is_int(t) for t in item) for item in value):
        msg = ("input holds token ids; this server tokenizes text itself with each model's "
               "own tokenizer (ids from another tokenizer would mean other words): send "
               "strings. LangChain's OpenAIEmbeddings: set check_embedding_ctx_length=False.")
        raise APIError(400, msg, "input")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            msg = f"input[{i}] must be a string, got {_json_type(item)}."
            raise APIError(400, msg, f"input[{i}]")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", dict: "an object",
             list: "an array", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)
