"""The models a server serves: how each is named, loaded, and found from a request's ``model``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.embedder import BGEEmbedder, EncoderBase
from ..core.m3 import BGEM3Embedder
from ..core.registry import Family, find_spec
from .errors import APIError

__all__ = ["ServedModel", "LoadedServedModel", "ModelPool", "MATRYOSHKA_MODELS"]

#: models trained with Matryoshka representation learning: a prefix of the vector is itself
#: an embedding, so ``dimensions`` may cut it (then it is L2-normalized again)
MATRYOSHKA_MODELS = frozenset({
    "qwen/qwen3-embedding-0.6b",
    "qwen/qwen3-embedding-4b",
    "qwen/qwen3-embedding-8b",
    "alibaba-nlp/gte-multilingual-base",
})


@dataclass(frozen=True)
class ServedModel:
    """One model to serve.

    Args:
        name: hub id or local directory, as given to ``--model``. Requests name it by this
            string or by its last path component.
        options: keyword options of the core embedder (``device``, ``dtype``, ``pooling``,
            ``batch_size``, ...).
        matryoshka: whether ``dimensions`` may shorten its vectors (``None``: only for the
            models of :data:`MATRYOSHKA_MODELS`).

    Example:
        >>> ServedModel("BAAI/bge-small-en-v1.5", {"device": "cpu"}).ids
        ('BAAI/bge-small-en-v1.5', 'bge-small-en-v1.5')
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    matryoshka: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            msg = f"ServedModel.name must be a non-empty hub id or path, got {self.name!r}."
            raise ValueError(msg)

    @property
    def ids(self) -> tuple[str, ...]:
        """The names a request may use: the given string, then its last path component."""
        base = os.path.basename(os.path.normpath(self.name))
        return (self.name,) if base == self.name else (self.name, base)

    @property
    def kind(self) -> str:
        """``"rerank"`` (a registered reranker, or ``kind`` in options), ``"m3"`` or ``"dense"``."""
        from ..core.rerank_registry import find_reranker

        if "kind" in self.options or find_reranker(self.name) is not None:
            return "rerank"
        spec = find_spec(self.name)
        return "m3" if spec is not None and spec.family is Family.M3 else "dense"

    def load(self) -> LoadedServedModel:
        """Load the core object (weights come from the shared model cache)."""
        options = dict(self.options)
        kind = self.kind
        core: Any
        if kind == "rerank":
            from ..core.rerank import BGEReranker

            core = BGEReranker(self.name, **options)
        elif kind == "m3":
            options.pop("pooling", None)
            core = BGEM3Embedder(self.name, **options)
        else:
            core = BGEEmbedder(self.name, **options)
        matryoshka = self.matryoshka
        if matryoshka is None:
            matryoshka = self.name.lower() in MATRYOSHKA_MODELS
        return LoadedServedModel(self, core, matryoshka)


@dataclass
class LoadedServedModel:
    """A served model with its core object: an embedder, or a reranker."""

    config: ServedModel
    core: Any
    matryoshka: bool

    @property
    def id(self) -> str:
        return self.config.name

    @property
    def embedder(self) -> EncoderBase:
        """The core embedder (embedding models only)."""
        if not isinstance(self.core, EncoderBase):
            msg = f"{self.id!r} is a reranker, not an embedding model."
            raise TypeError(msg)
        return self.core

    @property
    def outputs(self) -> tuple[str, ...]:
        """What it answers: ``dense`` (+ ``sparse``, ``colbert`` for BGE-M3) or ``rerank``."""
        if isinstance(self.core, BGEM3Embedder):
            return ("dense", "sparse", "colbert")
        return ("dense",) if isinstance(self.core, EncoderBase) else ("rerank",)

    def card(self) -> dict[str, Any]:
        """Its ``/v1/models`` entry."""
        card = {"id": self.id, "object": "model", "created": 0, "owned_by": "bge-integrations",
                "outputs": list(self.outputs)}
        if not isinstance(self.core, EncoderBase):
            return {**card, "kind": self.core.kind.value, "max_length": self.core.max_length}
        return {**card, "dim": self.core.dim, "family": self.core.spec.family.value,
                "matryoshka": self.matryoshka, "query_max_length": self.core.query_max_length,
                "passage_max_length": self.core.passage_max_length}


class ModelPool:
    """The loaded models and their lookup by request name."""

    def __init__(self, models: Sequence[LoadedServedModel]) -> None:
        self.models = list(models)
        self._by_id: dict[str, LoadedServedModel] = {}
        for model in self.models:
            for name in model.config.ids:
                if self._by_id.setdefault(name, model) is not model:
                    msg = (f"two served models answer to the name {name!r}; serve each model "
                           "once, from paths whose last components differ.")
                    raise ValueError(msg)

    def find(self, name: str | None, output: str) -> LoadedServedModel:
        """The model a request names, able to give ``output`` (``dense``/``sparse``/...)."""
        able = [m for m in self.models if output in m.outputs]
        if name is None:
            if len(able) == 1:
                return able[0]
            msg = (f"model is required: this server serves {self.names(able)} for {output} "
                   "output; name one of them.")
            raise APIError(400, msg, "model")
        model = self._by_id.get(name)
        if model is None:
            msg = f"model {name!r} is not served here; served models: {self.names(self.models)}."
            raise APIError(404, msg, "model", "model_not_found")
        if output not in model.outputs:
            msg = (f"model {name!r} gives no {output} output (it gives {list(model.outputs)}); "
                   f"models with {output} output: {self.names(able) or 'none'}.")
            raise APIError(400, msg, "model")
        return model

    @staticmethod
    def names(models: Sequence[LoadedServedModel]) -> str:
        return ", ".join(repr(m.id) for m in models)
