"""Model registry: how each known embedding model must be prompted and pooled.

One frozen :class:`ModelSpec` row per model, keyed by its hub id. Lookup accepts the hub id
or the basename of a local directory (case-insensitive). Explicit arguments given to an
embedder always win over the table.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "Family",
    "Pooling",
    "ModelSpec",
    "register_model",
    "get_spec",
    "find_spec",
    "list_models",
    "resolve_spec",
]


class Family(str, Enum):
    """How a model is fed: encoder (BERT-like), m3 (BGE-M3), decoder (LLM), icl (bge-en-icl)."""

    ENCODER = "encoder"
    M3 = "m3"
    DECODER = "decoder"
    ICL = "icl"


class Pooling(str, Enum):
    """How token states become one vector."""

    CLS = "cls"
    MEAN = "mean"
    LAST_TOKEN = "last_token"


EN_INSTRUCTION = "Represent this sentence for searching relevant passages: "
ZH_INSTRUCTION = "为这个句子生成表示以用于检索相关文章："
WEB_SEARCH_TASK = "Given a web search query, retrieve relevant passages that answer the query"
ICL_TASK = "Given a web search query, retrieve relevant passages that answer the query."
INSTRUCT_QUERY_FORMAT = "Instruct: {}\nQuery: {}"
TAGGED_FORMAT = "<instruct>{}\n<query>{}"


@dataclass(frozen=True)
class ModelSpec:
    """What the embedder needs to know about one model.

    Attributes:
        name: hub id, e.g. ``"BAAI/bge-base-en-v1.5"``.
        family: how the model is fed (see :class:`Family`).
        pooling: ``cls``, ``mean`` or ``last_token``.
        query_instruction: default instruction put before queries (``None``: no instruction).
        query_instruction_format: ``format(instruction, query)`` template.
        passage_prefix: text put before every passage (E5 models need ``"passage: "``).
        trust_remote_code: whether the checkpoint ships custom modelling code.
        dim: output dimension, when known without loading.
        max_length: the model's context length used as the default max length.

    Example:
        >>> ModelSpec("me/my-model", family="encoder", pooling="mean").pooling
        <Pooling.MEAN: 'mean'>
    """

    name: str
    family: Family = Family.ENCODER
    pooling: Pooling = Pooling.CLS
    query_instruction: str | None = None
    query_instruction_format: str = "{}{}"
    passage_prefix: str | None = None
    trust_remote_code: bool = False
    dim: int | None = None
    max_length: int = 512

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            msg = "ModelSpec.name must be a non-empty string (the hub id, e.g. 'BAAI/bge-m3')."
            raise ValueError(msg)
        object.__setattr__(self, "family", _coerce(Family, self.family, "family"))
        object.__setattr__(self, "pooling", _coerce(Pooling, self.pooling, "pooling"))
        fmt = self.query_instruction_format.replace("\\n", "\n")
        object.__setattr__(self, "query_instruction_format", fmt)
        if fmt.count("{}") != 2:
            msg = (
                f"query_instruction_format must contain exactly two '{{}}' slots "
                f"(instruction, query); got {fmt!r}."
            )
            raise ValueError(msg)
        if self.dim is not None and self.dim <= 0:
            msg = f"dim must be positive, got {self.dim}."
            raise ValueError(msg)
        if self.max_length <= 0:
            msg = f"max_length must be positive, got {self.max_length}."
            raise ValueError(msg)
        if self.family in (Family.DECODER, Family.ICL) and self.pooling is not Pooling.LAST_TOKEN:
            msg = f"{self.name}: decoder and icl models need pooling='last_token'."
            raise ValueError(msg)

    def replace(self, **changes: object) -> ModelSpec:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _coerce(enum_cls: type[Enum], value: object, field: str) -> Enum:
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in enum_cls)  # type: ignore[attr-defined]
        msg = f"Unknown {field} {value!r}; valid values: {valid}."
        raise ValueError(msg) from None


def _bge_v1(size: str, lang: str, dim: int, v15: bool) -> ModelSpec:
    suffix = "-v1.5" if v15 else ""
    return ModelSpec(
        f"BAAI/bge-{size}-{lang}{suffix}",
        pooling=Pooling.CLS,
        query_instruction=EN_INSTRUCTION if lang == "en" else ZH_INSTRUCTION,
        dim=dim,
    )


def _llm(name: str, dim: int, fmt: str = INSTRUCT_QUERY_FORMAT, remote: bool = False,
         task: str = WEB_SEARCH_TASK) -> ModelSpec:
    return ModelSpec(
        name,
        family=Family.DECODER,
        pooling=Pooling.LAST_TOKEN,
        query_instruction=task,
        query_instruction_format=fmt,
        trust_remote_code=remote,
        dim=dim,
    )


def _e5(name: str, dim: int) -> ModelSpec:
    return ModelSpec(name, pooling=Pooling.MEAN, query_instruction="query: ",
                     passage_prefix="passage: ", dim=dim)


_BGE_DIMS = {("small", "en"): 384, ("base", "en"): 768, ("large", "en"): 1024,
             ("small", "zh"): 512, ("base", "zh"): 768, ("large", "zh"): 1024}

_BUILTIN: list[ModelSpec] = [
    *[
        _bge_v1(size, lang, dim, v15)
        for v15 in (True, False)
        for (size, lang), dim in _BGE_DIMS.items()
    ],
    ModelSpec("BAAI/bge-m3", family=Family.M3, pooling=Pooling.CLS, dim=1024, max_length=8192),
    ModelSpec(
        "BAAI/bge-en-icl",
        family=Family.ICL,
        pooling=Pooling.LAST_TOKEN,
        query_instruction=ICL_TASK,
        query_instruction_format=TAGGED_FORMAT,
        dim=4096,
    ),
    _llm("BAAI/bge-multilingual-gemma2", 3584, fmt=TAGGED_FORMAT, task=ICL_TASK),
    _llm("BAAI/bge-code-v1", 1536, fmt=TAGGED_FORMAT, remote=True,
         task="Given a question in text, retrieve relevant code that answers the question."),
    _llm("BAAI/bge-reasoner-embed-qwen3-8b-0923", 4096),
    _llm("Qwen/Qwen3-Embedding-0.6B", 1024, fmt="Instruct: {}\nQuery:{}"),
    _llm("Qwen/Qwen3-Embedding-4B", 2560, fmt="Instruct: {}\nQuery:{}"),
    _llm("Qwen/Qwen3-Embedding-8B", 4096, fmt="Instruct: {}\nQuery:{}"),
    _llm("intfloat/e5-mistral-7b-instruct", 4096),
    _e5("intfloat/e5-large-v2", 1024),
    _e5("intfloat/e5-base-v2", 768),
    _e5("intfloat/e5-small-v2", 384),
    ModelSpec(
        "intfloat/multilingual-e5-large-instruct",
        pooling=Pooling.MEAN,
        query_instruction=WEB_SEARCH_TASK,
        query_instruction_format=INSTRUCT_QUERY_FORMAT,
        dim=1024,
    ),
    _e5("intfloat/multilingual-e5-large", 1024),
    _e5("intfloat/multilingual-e5-base", 768),
    _e5("intfloat/multilingual-e5-small", 384),
    _e5("intfloat/e5-large", 1024),
    _e5("intfloat/e5-base", 768),
    _e5("intfloat/e5-small", 384),
    _llm("Alibaba-NLP/gte-Qwen2-7B-instruct", 3584, remote=True),
    _llm("Alibaba-NLP/gte-Qwen2-1.5B-instruct", 1536, remote=True),
    _llm("Alibaba-NLP/gte-Qwen1.5-7B-instruct", 4096, remote=True),
    ModelSpec("Alibaba-NLP/gte-multilingual-base", trust_remote_code=True, dim=768,
              max_length=8192),
    ModelSpec("Alibaba-NLP/gte-large-en-v1.5", trust_remote_code=True, dim=1024, max_length=8192),
    ModelSpec("Alibaba-NLP/gte-base-en-v1.5", trust_remote_code=True, dim=768, max_length=8192),
    ModelSpec("thenlper/gte-large", pooling=Pooling.MEAN, dim=1024),
    ModelSpec("thenlper/gte-base", pooling=Pooling.MEAN, dim=768),
    ModelSpec("thenlper/gte-small", pooling=Pooling.MEAN, dim=384),
    ModelSpec("thenlper/gte-large-zh", dim=1024),
    ModelSpec("thenlper/gte-base-zh", dim=768),
    ModelSpec("thenlper/gte-small-zh", dim=512),
    _llm("Salesforce/SFR-Embedding-2_R", 4096),
    _llm("Salesforce/SFR-Embedding-Mistral", 4096),
    _llm("Linq-AI-Research/Linq-Embed-Mistral", 4096),
    ModelSpec("maidalun1020/bce-embedding-base_v1", dim=768),
    ModelSpec("sentence-transformers/all-MiniLM-L6-v2", pooling=Pooling.MEAN, dim=384,
              max_length=256),
]

_REGISTRY: dict[str, ModelSpec] = {}
_LOCK = threading.Lock()


def _key(name: str) -> str:
    return name.strip().lower()


def _basename(name: str) -> str:
    return os.path.basename(os.path.normpath(name.strip())).lower()


def register_model(spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
    """Add a model to the registry.

    Args:
        spec: the model's description.
        overwrite: replace an existing entry of the same name instead of raising.

    Raises:
        ValueError: a model of that name is already registered and ``overwrite`` is false.

    Example:
        >>> from bge_integrations import ModelSpec, register_model
        >>> _ = register_model(ModelSpec("acme/tiny-embed", pooling="mean"), overwrite=True)
    """
    if not isinstance(spec, ModelSpec):
        msg = f"register_model expects a ModelSpec, got {type(spec).__name__}."
        raise TypeError(msg)
    with _LOCK:
        key = _key(spec.name)
        if key in _REGISTRY and not overwrite:
            msg = (
                f"Model {spec.name!r} is already registered; pass overwrite=True to replace it."
            )
            raise ValueError(msg)
        _REGISTRY[key] = spec
    return spec


for _spec in _BUILTIN:
    register_model(_spec)


def find_spec(name_or_path: str) -> ModelSpec | None:
    """Look a model up by hub id, then by the basename of a path; ``None`` when unknown."""
    with _LOCK:
        spec = _REGISTRY.get(_key(name_or_path))
        if spec is not None:
            return spec
        base = _basename(name_or_path)
        for candidate in _REGISTRY.values():
            if _basename(candidate.name) == base:
                return candidate
    return None


def get_spec(name_or_path: str) -> ModelSpec:
    """Like :func:`find_spec` but raises a :class:`KeyError` that says how to fix it."""
    spec = find_spec(name_or_path)
    if spec is None:
        msg = (
            f"Unknown model {name_or_path!r}: it is not in the registry. Pass pooling= "
            "('cls', 'mean' or 'last_token') and, for retrieval queries, query_instruction=, "
            "or call register_model(ModelSpec(...)). See `bge-integrations models` for the list."
        )
        raise KeyError(msg)
    return spec


def list_models() -> list[ModelSpec]:
    """Every registered model, in registration order."""
    with _LOCK:
        return list(_REGISTRY.values())


def resolve_spec(name_or_path: str | os.PathLike[str], **overrides: object) -> ModelSpec:
    """The registry entry for a model with explicit keyword overrides applied.

    Overrides whose value is ``None`` are ignored, except ``query_instruction`` which may be
    set to ``""`` to switch the instruction off. A model not in the registry needs ``pooling``.
    """
    name_or_path = os.fspath(name_or_path)
    given = {k: v for k, v in overrides.items() if v is not None}
    spec = find_spec(name_or_path)
    if spec is None:
        if "pooling" not in given:
            get_spec(name_or_path)  # raises the explanatory KeyError
        spec = ModelSpec(name_or_path, **given)  # type: ignore[arg-type]
    elif given:
        spec = spec.replace(**given)
    if spec.query_instruction == "":
        spec = spec.replace(query_instruction=None)
    return spec
