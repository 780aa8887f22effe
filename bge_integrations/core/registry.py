"""Model registry: how each known embedding model must be prompted and pooled.

One frozen :class:`ModelSpec` row per model, keyed by its hub id. Lookup accepts the hub id
or the basename of a local directory (case-insensitive). Explicit arguments given to an
embedder always win over the table.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import threading
import warnings
from dataclasses import dataclass
from enum import Enum

from .resolve import UnknownModelError

__all__ = [
    "DEFAULT_MODEL",
    "Family",
    "Pooling",
    "ModelSpec",
    "register_model",
    "get_spec",
    "find_spec",
    "list_models",
    "resolve_spec",
    "close_names",
    "did_you_mean",
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


#: the model an embedder loads when none is named
DEFAULT_MODEL = "BAAI/bge-small-en-v1.5"

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
        max_length: the default token limit (FlagEmbedding's 512 for most rows); ``None``: the
            checkpoint's own (``sentence_bert_config.json`` ``max_seq_length``, else the
            tokenizer's ``model_max_length``), read at load time.

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
    max_length: int | None = None

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
        if self.max_length is not None and self.max_length <= 0:
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
        max_length=512,
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
        max_length=512,
    )


def _e5(name: str, dim: int) -> ModelSpec:
    return ModelSpec(name, pooling=Pooling.MEAN, query_instruction="query: ",
                     passage_prefix="passage: ", dim=dim, max_length=512)


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
        max_length=512,
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
        max_length=512,
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
    ModelSpec("thenlper/gte-large", pooling=Pooling.MEAN, dim=1024, max_length=512),
    ModelSpec("thenlper/gte-base", pooling=Pooling.MEAN, dim=768, max_length=512),
    ModelSpec("thenlper/gte-small", pooling=Pooling.MEAN, dim=384, max_length=512),
    ModelSpec("thenlper/gte-large-zh", dim=1024, max_length=512),
    ModelSpec("thenlper/gte-base-zh", dim=768, max_length=512),
    ModelSpec("thenlper/gte-small-zh", dim=512, max_length=512),
    _llm("Salesforce/SFR-Embedding-2_R", 4096),
    _llm("Salesforce/SFR-Embedding-Mistral", 4096),
    _llm("Linq-AI-Research/Linq-Embed-Mistral", 4096),
    ModelSpec("maidalun1020/bce-embedding-base_v1", dim=768, max_length=512),
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
    """Look a model up by hub id, then by the basename of a path; ``None`` when unknown.

    Surrounding whitespace and case are ignored.
    """
    with _LOCK:
        spec = _REGISTRY.get(_key(name_or_path))
        if spec is not None:
            return spec
        base = _basename(name_or_path)
        for candidate in _REGISTRY.values():
            if _basename(candidate.name) == base:
                return candidate
    return None


def close_names(name_or_path: str, n: int = 3) -> list[str]:
    """Registered names that look like ``name_or_path`` (a typo, a renamed folder), best first:
    those about as close as the closest one (a typo of one letter names its one model).

    Example:
        >>> close_names("BAAI/bge-smal-en-v1.5")
        ['BAAI/bge-small-en-v1.5']
    """
    with _LOCK:
        names = [spec.name for spec in _REGISTRY.values()]
    key = _key(name_or_path)
    scored: dict[str, float] = {}
    for name in names:
        candidates = [(key, name.lower())]
        if "/" in key or "/" not in name:
            candidates.append((_basename(name_or_path), _basename(name)))
        else:
            candidates.append((key, _basename(name)))
        score = max(difflib.SequenceMatcher(None, a, b).ratio() for a, b in candidates)
        if score >= 0.75:
            scored[name] = score
    if not scored:
        return []
    best = max(scored.values())
    ranked = sorted(scored, key=lambda name: -scored[name])
    return [name for name in ranked if scored[name] >= best - 0.03][:n]


def did_you_mean(name_or_path: str) -> str:
    """``" Did you mean 'A' or 'B'?"`` for the close registry names, ``""`` when none."""
    near = close_names(name_or_path)
    return f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""


#: how the unknown-model messages say to choose a pooling (the CLI names its flag instead)
POOLING_ADVICE = "pooling= ('cls', 'mean' or 'last_token')"


def get_spec(name_or_path: str) -> ModelSpec:
    """Like :func:`find_spec` but raises an :class:`UnknownModelError` that says how to fix it
    (with the close registry names: "Did you mean 'BAAI/bge-small-en-v1.5'?").
    """
    spec = find_spec(name_or_path)
    if spec is None:
        msg = (f"Unknown model {name_or_path!r}: it is not in the registry."
               f"{did_you_mean(name_or_path)} For a model that is not registered, pass "
               f"{POOLING_ADVICE} and, for retrieval queries, "
               "query_instruction=, or call register_model(ModelSpec(...)). See "
               "`bge-integrations models` for the list.")
        raise UnknownModelError(msg)
    return spec


def _local_copy_spec(path: str, given: dict[str, object]) -> ModelSpec | None:
    """The registry row a local folder whose name is not registered records (see
    :func:`.checkpoint.recorded_name`); when none, tell the user what was not applied.
    """
    from .checkpoint import recorded_name

    recorded = recorded_name(path)  # also: no config.json -> ModelNotFoundError
    spec = find_spec(recorded) if recorded else None
    if spec is not None:
        return spec
    near = close_names(path)
    copy_hint = (f" If it is a copy of {near[0]!r}, use its settings: register_model("
                 f"get_spec({near[0]!r}).replace(name={path!r})), or pass them as keywords."
                 if near else "")
    if "pooling" not in given:
        msg = (f"{path!r} is not a registered model: neither its folder name nor its "
               "config.json names a registry entry, so no registry settings (pooling, query "
               f"instruction) can apply. Pass {POOLING_ADVICE} and, for "
               "retrieval queries, query_instruction=." + copy_hint +
               " See `bge-integrations models` for the list.")
        raise UnknownModelError(msg)
    lost = _lost_settings(find_spec(near[0]), given) if near else []
    if lost:
        msg = (f"{path!r} is not a registered model (its name resembles {near[0]!r}), so "
               f"only the settings you passed apply: {'; '.join(lost)}." + copy_hint)
        warnings.warn(msg, UserWarning, stacklevel=4)
    return None


def _lost_settings(spec: ModelSpec | None, given: dict[str, object]) -> list[str]:
    """What ``spec`` would set that the keywords ``given`` leave out or set differently."""
    if spec is None:
        return []
    lost = []
    if spec.query_instruction and "query_instruction" not in given:
        lost.append(f"queries get no instruction ({spec.name} uses "
                    f"{spec.query_instruction!r})")
    if Pooling(given["pooling"]) is not spec.pooling:
        lost.append(f"pooling is {Pooling(given['pooling']).value!r} ({spec.name} uses "
                    f"{spec.pooling.value!r})")
    return lost


def list_models() -> list[ModelSpec]:
    """Every registered model, in registration order."""
    with _LOCK:
        return list(_REGISTRY.values())


def resolve_spec(name_or_path: str | os.PathLike[str], **overrides: object) -> ModelSpec:
    """The registry entry for a model with explicit keyword overrides applied.

    Overrides whose value is ``None`` are ignored, except ``query_instruction`` which may be
    set to ``""`` to switch the instruction off. A model not in the registry needs ``pooling``.
    A local folder whose name is not registered is recognised by the hub id it records
    (:func:`.checkpoint.recorded_name`); otherwise the registry's settings cannot apply, and
    that is said: an error without ``pooling``, a warning when the folder's name resembles a
    registered model and no ``query_instruction`` is given.

    Raises:
        UnknownModelError: not registered and no ``pooling`` (names close registry entries).
        ModelNotFoundError: a local folder without ``config.json``.
    """
    name_or_path = os.fspath(name_or_path)
    given = {k: v for k, v in overrides.items() if v is not None}
    spec = find_spec(name_or_path)
    if spec is None and os.path.isdir(os.path.expanduser(name_or_path)):
        spec = _local_copy_spec(name_or_path, given)
    if spec is None:
        if "pooling" not in given:
            get_spec(name_or_path)  # raises the explanatory UnknownModelError
        spec = ModelSpec(name_or_path.strip(), **given)  # type: ignore[arg-type]
    elif given:
        spec = spec.replace(**given)
    if spec.query_instruction == "":
        spec = spec.replace(query_instruction=None)
    return spec
