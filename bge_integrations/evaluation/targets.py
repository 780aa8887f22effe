"""What can be evaluated, and the search settings ("modes") each one can serve.

A target is an index (``HybridIndex``, ``QdrantHybridIndex``, ``DenseIndex``) or a retriever
over one (the LangChain and LlamaIndex ``BGEM3Retriever``). Every search goes through the
index's public ``search_many``: one model call per block of queries, never one per query. A
retriever is searched through its index with the retriever's own settings (mode, weights,
fusion, metadata filter), so the ranking equals what ``retriever.invoke(query)`` returns at
the same depth. Any other LangChain or LlamaIndex retriever is run through its own public
interface (:class:`FrameworkRetriever`).

Mode names and the search keywords they stand for:

==============  ============================================================
``dense``       ``{"mode": "dense"}`` (the only mode of a ``DenseIndex``)
``sparse``      ``{"mode": "sparse"}``
``colbert``     ``{"mode": "colbert"}`` (indexes that store ColBERT vectors)
``hybrid``      ``{"mode": "hybrid", "fusion": "weighted"}`` (default weights)
``hybrid-rrf``  ``{"mode": "hybrid", "fusion": "rrf"}``
==============  ============================================================

Example:
    >>> target = as_target(index)  # doctest: +SKIP
    >>> target.modes  # doctest: +SKIP
    ('dense', 'sparse', 'colbert', 'hybrid', 'hybrid-rrf')
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .data import few

__all__ = ["MODE_SETTINGS", "SEARCH_KEYS", "QUERY_BLOCK", "Target", "FrameworkRetriever",
           "as_target", "check_doc_ids"]

#: mode name -> the search keyword arguments it stands for
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "dense": {"mode": "dense"},
    "sparse": {"mode": "sparse"},
    "colbert": {"mode": "colbert"},
    "hybrid": {"mode": "hybrid", "fusion": "weighted"},
    "hybrid-rrf": {"mode": "hybrid", "fusion": "rrf"},
}
#: keywords a setting may give to ``search_many`` (besides ``k``)
SEARCH_KEYS = ("mode", "weights", "fusion", "filter")
#: queries per ``search_many`` call (one model call each); bounds the hits held at once
QUERY_BLOCK = 1024


@dataclass
class Target:
    """An index to search, with the settings a retriever fixes (its filter, its mode...).

    Attributes:
        index: the index; searched with ``search_many``.
        hybrid: whether the index takes ``mode`` / ``weights`` / ``fusion`` (BGE-M3 indexes).
        has_colbert: whether it stores ColBERT vectors.
        own: the retriever's settings (empty for a bare index).
    """

    index: Any
    hybrid: bool
    has_colbert: bool
    own: dict[str, Any] = field(default_factory=dict)

    @property
    def modes(self) -> tuple[str, ...]:
        """The mode names this target can serve."""
        if not self.hybrid:
            return ("dense",)
        return tuple(m for m in MODE_SETTINGS if m != "colbert" or self.has_colbert)

    def settings(self, modes: object) -> dict[str, dict[str, Any]]:
        """Setting name -> search keywords for ``modes``.

        ``modes``: ``None`` (a retriever: its own setting, named ``"retriever"``; an index:
        ``"all"``), ``"all"``, a mode name, a list of mode names, or a dict of your own named
        settings (``{"tuned": {"mode": "hybrid", "weights": (0.5, 0.2, 0.3)}}``).

        Raises:
            ValueError: an unknown mode, a mode this index cannot serve (the message names the
                ones it can), or an unknown search keyword.
        """
        if modes is None and self.own:
            return {"retriever": self._custom("retriever", self.own)}
        if modes is None or modes == "all":
            modes = list(self.modes)
        if isinstance(modes, str):
            modes = [modes]
        if isinstance(modes, Mapping):
            named = {str(name): self._custom(name, kwargs) for name, kwargs in modes.items()}
        elif isinstance(modes, Sequence) and modes:
            named = {}
            for mode in modes:
                if mode not in MODE_SETTINGS:
                    msg = (f"unknown mode {mode!r}; valid modes: {', '.join(MODE_SETTINGS)} "
                           "(or a dict of named search settings).")
                    raise ValueError(msg)
                named[mode] = self._custom(mode, MODE_SETTINGS[mode])
        else:
            msg = (f"modes must be None, 'all', a list of mode names or a dict of named search "
                   f"settings, got {modes!r:.80}.")
            raise ValueError(msg)
        return named

    def _custom(self, name: object, kwargs: object) -> dict[str, Any]:
        if not isinstance(kwargs, Mapping) or set(kwargs) - set(SEARCH_KEYS):
            msg = (f"setting {name!r} must be a dict of search keywords ({', '.join(SEARCH_KEYS)})"
                   f", got {kwargs!r:.80}.")
            raise ValueError(msg)
        settings = {key: value for key, value in self.own.items() if key == "filter"}
        settings.update(kwargs)
        mode = getattr(settings.get("mode", "dense"), "value", settings.get("mode", "dense"))
        fusion = getattr(settings.get("fusion"), "value", settings.get("fusion"))
        served = mode if mode != "hybrid" else ("hybrid-rrf" if fusion == "rrf" else "hybrid")
        if served not in self.modes:
            what = type(self.index).__name__
            msg = (f"setting {name!r} asks for mode {mode!r}, which this {what} cannot serve; "
                   f"it serves: {', '.join(self.modes)}.")
            raise ValueError(msg)
        if not self.hybrid:  # a dense-only index takes no mode, weights or fusion
            settings = {key: value for key, value in settings.items() if key == "filter"}
        return settings

    def search(self, queries: Sequence[str], k: int, settings: Mapping[str, Any]
               ) -> list[list[Any]]:
        """The top ``k`` hits of each query under ``settings``, in blocks of
        :data:`QUERY_BLOCK` queries (one model call per block)."""
        hits: list[list[Any]] = []
        for lo in range(0, len(queries), QUERY_BLOCK):
            hits.extend(self.index.search_many(list(queries[lo:lo + QUERY_BLOCK]), k=k,
                                               **settings))
        return hits

    def unknown_ids(self, doc_ids: set[str]) -> set[str]:
        """The ids among ``doc_ids`` that the index does not hold (empty when the index has
        no ``get`` to ask)."""
        get = getattr(self.index, "get", None)
        if get is None or not doc_ids:
            return set()
        try:
            found = {record.id for record in get(sorted(doc_ids))}
        except ValueError as exc:  # an id the index could never hold
            msg = f"qrels name document ids the index cannot hold: {exc}"
            raise ValueError(msg) from None
        return doc_ids - found


class FrameworkRetriever(Target):
    """Any other LangChain or LlamaIndex retriever, through its public interface only.

    LangChain retrievers run ``retriever.batch(queries)`` (the Runnable's concurrent batch),
    LlamaIndex ones ``retriever.retrieve(query)`` per query: how they embed is theirs. Their
    own ``k`` / ``similarity_top_k`` is the depth, their results need ids (``Document.id``,
    ``node.node_id``) that the qrels use, and they are reported as the setting ``"retriever"``.
    """

    @property
    def modes(self) -> tuple[str, ...]:
        return ("retriever",)

    def settings(self, modes: object) -> dict[str, dict[str, Any]]:
        if modes not in (None, "all", "retriever", ["retriever"]):
            msg = (f"a {type(self.index).__name__} is evaluated with its own settings only "
                   f"(modes=None), got modes={modes!r:.80}.")
            raise ValueError(msg)
        return {"retriever": {}}

    def search(self, queries: Sequence[str], k: int, settings: Mapping[str, Any]
               ) -> list[list[Any]]:
        from ..retrieval.contract import Hit

        if hasattr(self.index, "batch"):  # LangChain: a Runnable
            rows = [[(d.id, d.page_content) for d in docs]
                    for docs in self.index.batch(list(queries))]
        else:
            rows = [[(n.node.node_id, n.node.get_content()) for n in self.index.retrieve(q)]
                    for q in queries]
        if any(doc_id is None for row in rows for doc_id, _ in row):
            msg = (f"the {type(self.index).__name__} returned documents without an id; give "
                   "every indexed Document an id (the one the qrels use).")
            raise ValueError(msg)
        return [[Hit(doc_id, text, {}, 0.0, {}) for doc_id, text in row] for row in rows]


def _framework_retriever(obj: Any) -> bool:
    """Whether ``obj`` is a LangChain or LlamaIndex retriever (their modules are loaded if
    it is one)."""
    for module, name in (("langchain_core.retrievers", "BaseRetriever"),
                         ("llama_index.core.base.base_retriever", "BaseRetriever")):
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(obj, getattr(loaded, name)):
            return True
    return False


def _retriever_settings(obj: Any) -> tuple[Any, dict[str, Any]] | None:
    """``(index, settings)`` of one of our retrievers (its module is loaded if it is one)."""
    langchain = sys.modules.get("bge_integrations.langchain.retriever")
    if langchain is not None and isinstance(obj, langchain.BGEM3Retriever):
        return obj.index, {"mode": obj.mode.value, "weights": tuple(obj.weights),
                           "fusion": obj.fusion.value, "filter": obj.filter}
    llama = sys.modules.get("bge_integrations.llama_index.retriever")
    if llama is not None and isinstance(obj, llama.BGEM3Retriever):
        from ..llama_index.filters import to_index_filter

        return obj.index, {"mode": obj.mode.value, "weights": tuple(obj.weights),
                           "fusion": obj.fusion.value, "filter": to_index_filter(obj.filters)}
    return None


def as_target(obj: Any) -> Target:
    """The :class:`Target` for an index or a retriever, or a ``TypeError`` naming what works.

    Example:
        >>> as_target(object())
        Traceback (most recent call last):
        ...
        TypeError: cannot evaluate a object: pass a HybridIndex, QdrantHybridIndex, DenseIndex, \
or a LangChain / LlamaIndex retriever.
    """
    # a retriever that reranks its results is run as it is (its index's search_many does not
    # rerank): through its own interface, like any other framework retriever
    reranks = getattr(obj, "rerank", None) is not None and _framework_retriever(obj)
    found = None if reranks else _retriever_settings(obj)
    if found is None and _framework_retriever(obj):
        return FrameworkRetriever(obj, hybrid=False, has_colbert=False)
    index, own = found if found is not None else (obj, {})
    if not callable(getattr(index, "search_many", None)):
        msg = (f"cannot evaluate a {type(obj).__name__}: pass a HybridIndex, QdrantHybridIndex, "
               "DenseIndex, or a LangChain / LlamaIndex retriever.")
        raise TypeError(msg)
    declared = getattr(index, "modes", None)  # the index contract's list of modes, if any
    if declared is not None:
        served = {getattr(m, "value", m) for m in declared}
        return Target(index, "hybrid" in served, "colbert" in served, own)
    return Target(index, hasattr(index, "store_colbert"),
                  bool(getattr(index, "store_colbert", False)), own)


def check_doc_ids(target: Target, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """A ``ValueError`` listing a few qrels document ids that the index does not hold."""
    unknown = target.unknown_ids({doc for judged in qrels.values() for doc in judged})
    if unknown:
        msg = (f"qrels name {len(unknown)} document id(s) that are not in the index: "
               f"{few(unknown)}; index the whole corpus under the ids the qrels use.")
        raise ValueError(msg)
