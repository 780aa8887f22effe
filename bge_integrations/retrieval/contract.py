"""What every index shares: the contract (:class:`SearchIndex`), the encoders it accepts
(:class:`DenseEncoder`, :class:`M3Encoder`), result types and the validation of every input.

Everything a call could get wrong is checked here, before an index changes, so a rejected
``add`` leaves the index as it was and every backend rejects the same inputs the same way.
Metadata is bounded at the door: at most :data:`MAX_METADATA_DEPTH` levels of nesting and
:data:`MAX_METADATA_BYTES` of JSON per document.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..core.inputs import validate_texts
from ..core.scores import DEFAULT_WEIGHTS, check_weights
from .filters import FilterNode, parse_filter
from .fusion import Fusion, RetrievalMode, coerce_fusion, coerce_mode

__all__ = ["NotPicklable", "refuse_pickle", "Hit", "Record", "DocBatch", "EmbeddingBatch",
           "SearchRequest", "SearchIndex", "DenseEncoder", "M3Encoder", "validate_ids",
           "single_query", "check_batch_size", "require_m3", "require_dense",
           "MAX_ID_LENGTH", "MAX_METADATA_DEPTH", "MAX_METADATA_BYTES"]

#: longest accepted document id, in characters
MAX_ID_LENGTH = 512
#: deepest nesting of lists and dicts accepted in one document's metadata
MAX_METADATA_DEPTH = 32
#: largest accepted metadata of one document, as UTF-8 JSON
MAX_METADATA_BYTES = 1 << 20


@dataclass(frozen=True)
class Record:
    """A stored document.

    Attributes:
        id: the document id.
        text: the document text.
        metadata: its JSON metadata.
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        id: the document id.
        text: the document text.
        metadata: its JSON metadata.
        score: the score that ranked it (the fused score in ``hybrid`` mode).
        scores: the per-mode scores behind ``score``: ``dense``, ``sparse``, ``colbert``.
    """

    id: str
    text: str
    metadata: dict[str, Any]
    score: float
    scores: dict[str, float]


@dataclass(frozen=True)
class EmbeddingBatch:
    """Stored documents with their stored vectors, as ``iter_embeddings`` yields them.

    The fields are what the indexes' ``add_embeddings`` takes, so a batch moves to another
    index without a model call (:func:`~.transfer.copy_index`).

    Attributes:
        ids: the document ids.
        texts: the document texts.
        metadatas: their JSON metadata (copies: editing them changes no index).
        dense: float32 ``(n, dim)``.
        sparse: one ``{token id: weight}`` dict per document (BGE-M3 indexes; ``None`` for a
            dense index).
        colbert: one float32 ``(n_tokens, dim)`` array per document (BGE-M3 indexes with
            ``store_colbert=True``; else ``None``).

    Example:
        >>> batch = EmbeddingBatch(["a"], ["a text"], [{}], np.ones((1, 4), np.float32))
        >>> len(batch), batch.sparse is None
        (1, True)
    """

    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    dense: np.ndarray
    sparse: list[dict[int, float]] | None = None
    colbert: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.ids)


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` if it is a positive int, else a ``ValueError``.

    Example:
        >>> check_batch_size(256)
        256
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        msg = f"batch_size must be a positive int, got {batch_size!r:.40}."
        raise ValueError(msg)
    return batch_size


def validate_ids(ids: object, name: str = "ids") -> list[str]:
    """``ids`` as a list of valid, distinct id strings, or a ``ValueError`` naming the bad one.

    Example:
        >>> validate_ids(["a", "b"])
        ['a', 'b']
    """
    if isinstance(ids, str | bytes | bytearray) or not isinstance(ids, Sequence):
        msg = f"{name} must be a list of strings, got {type(ids).__name__}; wrap one id in a list."
        raise ValueError(msg)
    seen: set[str] = set()
    for i, value in enumerate(ids):
        if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or (
                not value.isprintable()):
            msg = (f"{name}[{i}] = {value!r:.80} is not a valid id: use a non-empty string of at "
                   f"most {MAX_ID_LENGTH} printable characters.")
            raise ValueError(msg)
        if value in seen:
            msg = f"{name}[{i}] = {value!r:.80} appears twice; ids in one call must be distinct."
            raise ValueError(msg)
        seen.add(value)
    return list(ids)


def single_query(query: object) -> list[str]:
    """``[query]``, the argument ``search`` hands to ``search_many``; a ``TypeError`` unless
    ``query`` is a str.

    Example:
        >>> single_query("what is BGE?")
        ['what is BGE?']
    """
    if not isinstance(query, str):
        msg = f"query must be a str, got {type(query).__name__}; use search_many for lists."
        raise TypeError(msg)
    return [query]


def _depth_within(value: object, limit: int) -> bool:
    """Whether lists/dicts/tuples nest at most ``limit`` deep (iterative: no recursion)."""
    stack = [(value, 1)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > limit:
                return False
            if id(item) in seen:
                continue  # a cycle: json.dumps reports it
            seen.add(id(item))
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)
    return True


def _metadata(value: object, i: int) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        msg = f"metadatas[{i}] must be a dict with str keys (or None), got {value!r:.80}."
        raise ValueError(msg)
    if not _depth_within(value, MAX_METADATA_DEPTH):
        msg = (f"metadatas[{i}] nests lists and dicts more than {MAX_METADATA_DEPTH} levels "
               "deep; flatten it.")
        raise ValueError(msg)
    try:
        text = json.dumps(dict(value), allow_nan=False, ensure_ascii=False)
        if len(text) > MAX_METADATA_BYTES or len(text.encode("utf-8")) > MAX_METADATA_BYTES:
            msg = (f"metadatas[{i}] is over {MAX_METADATA_BYTES} bytes as JSON; store large "
                   "data elsewhere and keep a reference in the metadata.")
            raise OverflowError(msg)
        text.encode("utf-8")  # a lone surrogate passes json.dumps but can never be saved
        bad = [k for k in _keys(value) if not isinstance(k, str)]
        if bad:  # json.dumps would turn 1 into "1" silently (and merge it with a "1" key)
            msg = f"key {bad[0]!r} is not a str"
            raise TypeError(msg)
    except OverflowError as exc:
        raise ValueError(str(exc)) from None
    except (TypeError, ValueError, RecursionError) as exc:
        msg = (f"metadatas[{i}] is not JSON-serialisable ({exc}); use str, int, float, bool, "
               "None, lists and dicts of those.")
        raise ValueError(msg) from None
    # the round trip stores plain JSON, detached from the caller's objects
    return json.loads(text)


def _keys(value: object) -> Iterator[object]:
    """Every dict key inside ``value`` (which ``json.dumps`` accepted: no cycles)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _keys(item)


@dataclass(frozen=True)
class DocBatch:
    """Validated arguments of ``add``: texts, one metadata dict and one id per text."""

    texts: list[str]
    metadatas: list[dict[str, Any]]
    ids: list[str]

    @classmethod
    def build(cls, texts: object, metadatas: object = None, ids: object = None, *,
              max_texts: int | None = None) -> DocBatch:
        """Check ``add``'s arguments; ids default to fresh ``uuid4().hex`` strings.

        ``max_texts`` is the embedder's ``max_texts_per_call``: an ``add`` over it is refused
        whole, however the index splits its model calls.
        """
        text_list = validate_texts(texts, name="texts", max_texts=max_texts)
        n = len(text_list)
        for name, value in (("metadatas", metadatas), ("ids", ids)):
            if value is not None and (isinstance(value, str | bytes | bytearray | Mapping)
                                      or not isinstance(value, Sequence) or len(value) != n):
                got = len(value) if isinstance(value, Sequence) else type(value).__name__
                msg = f"{name} must be a list with one entry per text ({n}), got {got}."
                raise ValueError(msg)
        meta = [_metadata(m, i) for i, m in enumerate(metadatas or [None] * n)]
        id_list = [uuid.uuid4().hex for _ in range(n)] if ids is None else validate_ids(ids)
        return cls(text_list, meta, id_list)


@dataclass(frozen=True)
class SearchRequest:
    """Validated arguments of ``search`` / ``search_many``."""

    queries: list[str]
    k: int
    filter: FilterNode | None
    mode: RetrievalMode
    fusion: Fusion
    weights: tuple[float, float, float]
    has_colbert: bool

    @classmethod
    def build(cls, queries: object, *, k: int = 10, filter: Mapping[str, Any] | None = None,
              mode: str | RetrievalMode = RetrievalMode.HYBRID,
              weights: Sequence[float] = DEFAULT_WEIGHTS,
              fusion: str | Fusion = Fusion.WEIGHTED, has_colbert: bool = True
              ) -> SearchRequest:
        """Check the search arguments against what the index stores."""
        query_list = validate_texts(queries, name="queries")
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            msg = f"k must be a positive int, got {k!r}."
            raise ValueError(msg)
        mode_, fusion_ = coerce_mode(mode), coerce_fusion(fusion)
        w = check_weights(weights)
        if not has_colbert and mode_ is RetrievalMode.COLBERT:
            msg = ("mode='colbert' needs ColBERT vectors, but this index was built with "
                   "store_colbert=False; use mode='hybrid' (dense + sparse) or rebuild the "
                   "index with store_colbert=True.")
            raise ValueError(msg)
        if not has_colbert and mode_ is RetrievalMode.HYBRID and w[0] + w[1] == 0:
            msg = (f"weights {weights!r} put all weight on ColBERT, which this index does not "
                   "store (store_colbert=False); give dense or sparse a positive weight.")
            raise ValueError(msg)
        return cls(query_list, k, parse_filter(filter), mode_, fusion_, w, has_colbert)

    @property
    def needs_dense(self) -> bool:
        """Dense query vectors are needed (dense search, or candidates for re-scoring)."""
        return self.mode is not RetrievalMode.SPARSE

    @property
    def needs_sparse(self) -> bool:
        """Sparse query vectors are needed."""
        return self.mode is not RetrievalMode.DENSE

    @property
    def needs_colbert(self) -> bool:
        """ColBERT query vectors are needed (re-scoring of the candidates)."""
        return self.has_colbert and self.mode in (RetrievalMode.COLBERT, RetrievalMode.HYBRID)

    @property
    def parts(self) -> tuple[str, ...]:
        """The per-mode scores that make up a hit's score (its ``Hit.scores`` keys)."""
        if self.mode is RetrievalMode.HYBRID:
            return ("dense", "sparse", "colbert") if self.has_colbert else ("dense", "sparse")
        return (self.mode.value,)


@runtime_checkable
class DenseEncoder(Protocol):
    """What :class:`~.dense.DenseIndex` needs from its embedder (``BGEEmbedder`` has it).

    ``encode_documents`` / ``encode_queries`` return float32 ``(n, dim)`` arrays; ``model_name``
    is the hub id or path the model was loaded from (recorded by ``save``).
    """

    @property
    def dim(self) -> int: ...

    model_name: str
    spec: Any
    max_texts_per_call: int | None

    def encode_documents(self, documents: Sequence[str]) -> np.ndarray: ...

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class M3Encoder(Protocol):
    """What :class:`~.index.HybridIndex` and ``QdrantHybridIndex`` need from a BGE-M3 embedder
    (``BGEM3Embedder`` has it): dense, sparse and ColBERT outputs and the vocabulary size."""

    @property
    def dim(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    model_name: str
    spec: Any
    max_texts_per_call: int | None

    def encode_documents(self, documents: Sequence[str], *, dense: bool = True,
                         sparse: bool = True, colbert: bool = False) -> Any: ...

    def encode_queries(self, queries: Sequence[str], *, dense: bool = True, sparse: bool = True,
                       colbert: bool = False) -> Any: ...


def require_m3(embedder: object, owner: str) -> M3Encoder:
    """``embedder`` if it is a BGE-M3 embedder, else a ``TypeError`` that says what to use.

    Example:
        >>> require_m3(object(), "HybridIndex")
        Traceback (most recent call last):
        ...
        TypeError: HybridIndex needs a BGE-M3 embedder (BGEM3Embedder: dense, sparse and \
ColBERT heads), got object; for any other model use DenseIndex(BGEEmbedder(...)).
    """
    if not isinstance(embedder, M3Encoder):
        msg = (f"{owner} needs a BGE-M3 embedder (BGEM3Embedder: dense, sparse and ColBERT "
               f"heads), got {type(embedder).__name__}; for any other model use "
               "DenseIndex(BGEEmbedder(...)).")
        raise TypeError(msg)
    return embedder


def require_dense(embedder: object, owner: str) -> DenseEncoder:
    """``embedder`` if it is a dense (non-M3) embedder, else a ``TypeError`` that says what to use.

    Example:
        >>> require_dense(object(), "DenseIndex")
        Traceback (most recent call last):
        ...
        TypeError: DenseIndex needs a dense embedder such as BGEEmbedder, got object; for \
BGEM3Embedder use HybridIndex or QdrantHybridIndex.
    """
    if hasattr(embedder, "vocab_size") or not isinstance(embedder, DenseEncoder):
        msg = (f"{owner} needs a dense embedder such as BGEEmbedder, got "
               f"{type(embedder).__name__}; for BGEM3Embedder use HybridIndex or "
               "QdrantHybridIndex.")
        raise TypeError(msg)
    return embedder


@runtime_checkable
class SearchIndex(Protocol):
    """The contract of every index (``HybridIndex``, ``DenseIndex`` and their Qdrant backends).

    ``modes`` lists the rankings ``search`` accepts as ``mode``; the hybrid indexes take
    ``weights`` and ``fusion`` too. Retrievers and the CLI use only this contract.

    Example:
        >>> from bge_integrations import DenseIndex, HybridIndex
        >>> issubclass(DenseIndex, SearchIndex) and issubclass(HybridIndex, SearchIndex)
        True
    """

    modes: tuple[RetrievalMode, ...]

    @property
    def embedder(self) -> Any: ...

    def __len__(self) -> int: ...

    def add(self, texts: Sequence[str], metadatas: Sequence[Mapping[str, Any] | None] | None = None,
            ids: Sequence[str] | None = None) -> list[str]: ...

    def delete(self, ids: Sequence[str]) -> int: ...

    def get(self, ids: Sequence[str]) -> list[Record]: ...

    def search(self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None,
               mode: str | RetrievalMode = ..., **options: Any) -> list[Hit]: ...

    def search_many(self, queries: Sequence[str], k: int = 10,
                    filter: Mapping[str, Any] | None = None, mode: str | RetrievalMode = ...,
                    **options: Any) -> list[list[Hit]]: ...


def refuse_pickle(obj: object) -> TypeError:
    """The error for pickling or deep-copying an object that holds an index.

    An index holds documents, vectors and open files: it moves between processes through its
    own ``save`` / ``load``, never through pickle.
    """
    name = type(obj).__name__
    msg = (f"{name} cannot be pickled or deep-copied: an index holds documents, vectors and "
           "open files. To search it in another process, save it with index.save(path) and "
           "open it there with HybridIndex.load(path, BGEM3Embedder(...)) or "
           "DenseIndex.load(path) (and build the retriever on it); copy.copy() of a retriever "
           "gives a shallow copy that shares its index.")
    return TypeError(msg)


class NotPicklable:
    """Indexes move between processes by ``save`` / ``load``: pickling or deep-copying one
    raises :func:`refuse_pickle`'s ``TypeError`` instead of failing on a lock inside it."""

    def __reduce__(self) -> Any:
        raise refuse_pickle(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        raise refuse_pickle(self)
