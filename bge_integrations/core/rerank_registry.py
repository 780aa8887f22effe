"""Reranker registry: how each known reranker must be fed and scored.

One frozen :class:`RerankerSpec` row per model, keyed by its hub id, with the rerankers of
FlagEmbedding 1.4.2's ``AUTO_RERANKER_MAPPING``. Lookup accepts the hub id or the basename of a
local directory (case-insensitive), like the embedder registry. Explicit arguments given to
:class:`~bge_integrations.BGEReranker` win over the table.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "RerankerKind",
    "RerankerSpec",
    "register_reranker",
    "find_reranker",
    "get_reranker",
    "list_rerankers",
    "LLM_PROMPT",
    "LIGHTWEIGHT_PROMPT",
]

#: FlagLLMReranker / LayerWiseFlagLLMReranker's default prompt
LLM_PROMPT = ("Given a query A and a passage B, determine whether the passage contains an answer "
              "to the query by providing a prediction of either 'Yes' or 'No'.")
#: LightWeightFlagLLMReranker's default prompt
LIGHTWEIGHT_PROMPT = "Predict whether passage B contains an answer to query A."


class RerankerKind(str, Enum):
    """How a reranker scores a pair.

    ``encoder``: a cross-encoder's classification logit (FlagReranker). ``llm``: a causal LM's
    'Yes' logit after the "A:"/"B:" prompt (FlagLLMReranker). ``layerwise``: MiniCPM with one
    score head per layer (LayerWiseFlagLLMReranker). ``lightweight``: Gemma-2 with per-layer
    heads and passage-token compression (LightWeightFlagLLMReranker).
    """

    ENCODER = "encoder"
    LLM = "llm"
    LAYERWISE = "layerwise"
    LIGHTWEIGHT = "lightweight"


@dataclass(frozen=True)
class RerankerSpec:
    """What :class:`~bge_integrations.BGEReranker` needs to know about one reranker.

    Attributes:
        name: hub id, e.g. ``"BAAI/bge-reranker-v2-m3"``.
        kind: how the model scores a pair (see :class:`RerankerKind`).
        trust_remote_code: whether the checkpoint needs its own modelling code.
        max_length: default token limit of a pair.
        query_instruction: text put before every query (LLM kinds: ``"A: "``).
        passage_instruction: text put before every passage (LLM kinds: ``"B: "``).
        prompt: the LLM kinds' task prompt (``None``: the kind's default).
        cutoff_layers: default score layers (layerwise / lightweight; ``None``: the last).
        compress_ratio: lightweight only: passage tokens averaged in groups of this size.
        compress_layers: lightweight only: layers before which the passage is compressed.

    Example:
        >>> RerankerSpec("me/my-reranker").kind
        <RerankerKind.ENCODER: 'encoder'>
    """

    name: str
    kind: RerankerKind = RerankerKind.ENCODER
    trust_remote_code: bool = False
    max_length: int = 512
    query_instruction: str | None = None
    passage_instruction: str | None = None
    prompt: str | None = None
    cutoff_layers: tuple[int, ...] | None = None
    compress_ratio: int = 1
    compress_layers: tuple[int, ...] = (8,)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            msg = "RerankerSpec.name must be a non-empty string (the hub id)."
            raise ValueError(msg)
        try:
            object.__setattr__(self, "kind", RerankerKind(self.kind))
        except ValueError:
            valid = ", ".join(repr(k.value) for k in RerankerKind)
            msg = f"Unknown reranker kind {self.kind!r}; valid values: {valid}."
            raise ValueError(msg) from None
        if self.max_length <= 0:
            msg = f"max_length must be positive, got {self.max_length}."
            raise ValueError(msg)
        if self.compress_ratio not in (1, 2, 4, 8):
            msg = f"compress_ratio must be 1, 2, 4 or 8, got {self.compress_ratio!r}."
            raise ValueError(msg)
        if self.cutoff_layers is not None:
            object.__setattr__(self, "cutoff_layers", tuple(self.cutoff_layers))
        object.__setattr__(self, "compress_layers", tuple(self.compress_layers))

    def replace(self, **changes: object) -> RerankerSpec:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _llm(name: str, kind: RerankerKind, **extra: object) -> RerankerSpec:
    return RerankerSpec(name, kind=kind, query_instruction="A: ", passage_instruction="B: ",
                        **extra)  # type: ignore[arg-type]


_BUILTIN = [
    RerankerSpec("BAAI/bge-reranker-base"),
    RerankerSpec("BAAI/bge-reranker-large"),
    RerankerSpec("BAAI/bge-reranker-v2-m3", max_length=8192),
    _llm("BAAI/bge-reranker-v2-gemma", RerankerKind.LLM, max_length=8192),
    _llm("BAAI/bge-reranker-v2-minicpm-layerwise", RerankerKind.LAYERWISE, max_length=2048),
    _llm("BAAI/bge-reranker-v2.5-gemma2-lightweight", RerankerKind.LIGHTWEIGHT,
         max_length=8192),
    RerankerSpec("jinaai/jina-reranker-v2-base-multilingual", trust_remote_code=True,
                 max_length=1024),
    RerankerSpec("Alibaba-NLP/gte-multilingual-reranker-base", trust_remote_code=True,
                 max_length=8192),
    RerankerSpec("maidalun1020/bce-reranker-base_v1"),
    RerankerSpec("jinaai/jina-reranker-v1-turbo-en", trust_remote_code=True, max_length=8192),
]

_REGISTRY: dict[str, RerankerSpec] = {}
_LOCK = threading.Lock()


def _basename(name: str) -> str:
    return os.path.basename(os.path.normpath(name.strip())).lower()


def register_reranker(spec: RerankerSpec, *, overwrite: bool = False) -> RerankerSpec:
    """Add a reranker to the registry.

    Raises:
        ValueError: a reranker of that name is registered and ``overwrite`` is false.

    Example:
        >>> from bge_integrations import RerankerSpec, register_reranker
        >>> _ = register_reranker(RerankerSpec("acme/tiny-reranker"), overwrite=True)
    """
    if not isinstance(spec, RerankerSpec):
        msg = f"register_reranker expects a RerankerSpec, got {type(spec).__name__}."
        raise TypeError(msg)
    with _LOCK:
        key = spec.name.strip().lower()
        if key in _REGISTRY and not overwrite:
            msg = (f"Reranker {spec.name!r} is already registered; pass overwrite=True to "
                   "replace it.")
            raise ValueError(msg)
        _REGISTRY[key] = spec
    return spec


for _spec in _BUILTIN:
    register_reranker(_spec)


def find_reranker(name_or_path: str) -> RerankerSpec | None:
    """Look a reranker up by hub id, then by the basename of a path; ``None`` when unknown."""
    with _LOCK:
        spec = _REGISTRY.get(name_or_path.strip().lower())
        if spec is not None:
            return spec
        base = _basename(name_or_path)
        for candidate in _REGISTRY.values():
            if _basename(candidate.name) == base:
                return candidate
    return None


def get_reranker(name_or_path: str | os.PathLike[str], kind: str | None = None) -> RerankerSpec:
    """The registry row of a reranker, or a new row of ``kind`` for an unlisted one.

    Raises:
        KeyError: the model is not registered and no ``kind`` was given; says how to fix it.
    """
    name = os.fspath(name_or_path)
    spec = find_reranker(name)
    if spec is None:
        if kind is None:
            valid = ", ".join(repr(k.value) for k in RerankerKind)
            msg = (f"Unknown reranker {name!r}: it is not in the reranker registry. Pass "
                   f"kind= ({valid}) to BGEReranker (--kind on the command line), or call "
                   "register_reranker(RerankerSpec(name, kind=...)). See `bge-integrations "
                   "models` for the list.")
            raise KeyError(msg)
        kind = RerankerKind(kind)
        if kind is RerankerKind.ENCODER:
            return RerankerSpec(name, kind=kind)
        return _llm(name, kind)
    if kind is not None and RerankerKind(kind) is not spec.kind:
        spec = spec.replace(kind=kind)
    return spec


def list_rerankers() -> list[RerankerSpec]:
    """Every registered reranker, in registration order."""
    with _LOCK:
        return list(_REGISTRY.values())
