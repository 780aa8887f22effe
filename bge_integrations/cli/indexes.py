"""The right index for a model (HybridIndex for BGE-M3, DenseIndex otherwise), saved and reopened,
and its Qdrant counterpart (QdrantHybridIndex, QdrantDenseIndex) for ``index upload|download``.

``index build``, ``index query`` and the demo work on either kind through these helpers and the
:class:`~bge_integrations.retrieval.SearchIndex` contract. Both kinds record in their manifest
where their model was loaded from, so :func:`open_index` reloads that exact copy (a local
directory, not only a hub id). An index saved by an earlier version with a ``model.json`` next
to its manifest still opens: that file names the model when the manifest does not.

Example:
    >>> from bge_integrations.cli.indexes import new_index, open_index, save_index
    >>> index = new_index("BAAI/bge-m3")  # doctest: +SKIP
    >>> index.add(["BGE-M3 is multilingual."]); save_index(index, "my-index")  # doctest: +SKIP
    >>> open_index("my-index").search("multilingual model", k=1)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.embedder import BGEEmbedder
from ..core.m3 import BGEM3Embedder
from ..core.m3_heads import is_m3_model
from ..retrieval import (
    DenseIndex,
    HybridIndex,
    IndexFileError,
    M3Encoder,
    QdrantDenseIndex,
    QdrantHybridIndex,
    SearchIndex,
)
from ..retrieval.persistence import MANIFEST, load_json, saved_kind

__all__ = ["LEGACY_MODEL_FILE", "embedder_of", "new_index", "save_index",
           "open_index", "qdrant_index"]

#: written next to a saved HybridIndex by earlier versions: the name or path of its model
LEGACY_MODEL_FILE = "model.json"
_LOADERS = {"dense": DenseIndex.load, "hybrid": HybridIndex.load}


def embedder_of(index: SearchIndex) -> Any:
    """The embedder behind any index (its ``embedder`` property)."""
    return index.embedder


def new_index(model: str, *, pooling: str | None = None, trust_remote_code: bool = False,
              store_colbert: bool = True, **core_options: Any) -> SearchIndex:
    """An empty index for ``model``: hybrid for BGE-M3 models, dense for every other one.

    Args:
        model: hub id or local directory.
        pooling: pooling of a dense model that is not in the registry.
        trust_remote_code: allow the checkpoint's own code.
        store_colbert: whether a hybrid index keeps ColBERT vectors.
        **core_options: ``device``, ``dtype``, ``batch_size``, ``show_progress``, ...
    """
    if is_m3_model(model):
        if pooling not in (None, "cls"):
            msg = f"BGE-M3 models use CLS pooling; pooling={pooling!r} does not apply."
            raise ValueError(msg)
        return HybridIndex(BGEM3Embedder(model, trust_remote_code=trust_remote_code,
                                         **core_options), store_colbert=store_colbert)
    return DenseIndex(BGEEmbedder(model, pooling=pooling, trust_remote_code=trust_remote_code,
                                  **core_options))


def save_index(index: DenseIndex | HybridIndex, path: str | os.PathLike[str]) -> None:
    """Save an embedded index to directory ``path`` (one atomic save, the model's source in
    its manifest) so :func:`open_index` reopens it."""
    index.save(path)


def qdrant_index(embedder: Any, client: Any, collection: str, *,
                 store_colbert: bool = True) -> SearchIndex:
    """The Qdrant index of ``collection`` for ``embedder``: a ``QdrantHybridIndex`` for a BGE-M3
    embedder, a ``QdrantDenseIndex`` otherwise (the collection is created when missing).

    Example:
        >>> from bge_integrations.retrieval.qdrant import make_client
        >>> remote = qdrant_index(index.embedder, make_client(), "docs")  # doctest: +SKIP
    """
    if isinstance(embedder, M3Encoder):
        return QdrantHybridIndex(embedder, client=client, collection_name=collection,
                                 store_colbert=store_colbert)
    return QdrantDenseIndex(embedder, client=client, collection_name=collection)


def open_index(path: str | os.PathLike[str], *, model: str | None = None,
               **core_options: Any) -> SearchIndex:
    """Load a saved index with the model that built it.

    Args:
        path: the index directory.
        model: load this model instead of the recorded one (e.g. the index was moved to a
            machine where the model lives elsewhere); it must be the same model.
        **core_options: ``device``, ``dtype``, ``batch_size``, ``show_progress``, ...

    Raises:
        FileNotFoundError: ``path`` is not a directory holding a saved index.
        IndexFileError: the saved index (or its legacy ``model.json``) is damaged.
    """
    root = Path(path).expanduser()
    kind = saved_kind(root)
    if kind is None:
        what = "does not exist" if not root.exists() else "holds no saved index"
        msg = f"{str(path)!r} {what}; build one with `bge-integrations index build`."
        raise FileNotFoundError(msg)
    return _LOADERS[kind](root, model=model or _legacy_model(root), **core_options)


def _legacy_model(root: Path) -> str | None:
    """The model an earlier version recorded in ``model.json``, when the manifest has no
    ``source`` of its own."""
    legacy = root / LEGACY_MODEL_FILE
    model = load_json(root / MANIFEST, 64 << 20).get("model")
    if not legacy.is_file() or (isinstance(model, dict) and "source" in model):
        return None
    recorded = load_json(legacy, 1 << 16)
    name = recorded.get("model") if isinstance(recorded, dict) else None
    if not isinstance(name, str) or not name or len(name) > 4096:
        msg = (f"{str(legacy)!r} does not name a model ({{\"model\": \"...\"}}); pass "
               "--model (or model=...) to open the index.")
        raise IndexFileError(msg)
    return name
