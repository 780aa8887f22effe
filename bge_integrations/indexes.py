"""The right index for a model (HybridIndex for BGE-M3, DenseIndex otherwise) and reopening one.

Example:
    >>> from bge_integrations.indexes import new_index, open_index
    >>> index = new_index("BAAI/bge-m3")  # doctest: +SKIP
    >>> index.add(["BGE-M3 is multilingual."]); index.save("my-index")  # doctest: +SKIP
    >>> open_index("my-index").search("multilingual model", k=1)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

from .core.embedder import BGEEmbedder
from .core.m3 import HEAD_FILES, BGEM3Embedder
from .core.registry import Family, find_spec
from .dense_index import INDEX_FILE, DenseIndex
from .retrieval import HybridIndex
from .retrieval.persistence import MANIFEST

__all__ = ["AnyIndex", "is_m3_model", "new_index", "open_index"]

AnyIndex = Union[DenseIndex, HybridIndex]


def is_m3_model(model: str) -> bool:
    """Whether ``model`` is BGE-M3-like: registry family ``m3``, or a directory with its heads."""
    spec = find_spec(model)
    if spec is not None:
        return spec.family is Family.M3
    path = Path(model).expanduser()
    return path.is_dir() and all((path / name).is_file() for name in HEAD_FILES.values())


def new_index(model: str, *, pooling: str | None = None, trust_remote_code: bool = False,
              **core_options: Any) -> AnyIndex:
    """An empty index for ``model``: hybrid for BGE-M3 models, dense for every other one.

    Args:
        model: hub id or local directory.
        pooling: pooling of a dense model that is not in the registry.
        trust_remote_code: allow the checkpoint's own code.
        **core_options: ``device``, ``dtype``, ``batch_size``, ``show_progress``, ...
    """
    if is_m3_model(model):
        if pooling not in (None, "cls"):
            msg = f"BGE-M3 models use CLS pooling; pooling={pooling!r} does not apply."
            raise ValueError(msg)
        return HybridIndex(BGEM3Embedder(model, trust_remote_code=trust_remote_code,
                                         **core_options))
    return DenseIndex(BGEEmbedder(model, pooling=pooling, trust_remote_code=trust_remote_code,
                                  **core_options))


def open_index(path: str | os.PathLike[str], **core_options: Any) -> AnyIndex:
    """Load an index saved by :func:`new_index`'s index, with the model that built it.

    Raises:
        FileNotFoundError: ``path`` is not a directory holding a saved index.
    """
    root = Path(path).expanduser()
    if (root / INDEX_FILE).is_file():
        return DenseIndex.load(root, **core_options)
    if (root / MANIFEST).is_file():
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        model = manifest.get("model", {}).get("name")
        if not isinstance(model, str):
            msg = f"{str(path)!r}: the index manifest names no model; rebuild the index."
            raise ValueError(msg)
        return HybridIndex.load(root, BGEM3Embedder(model, **core_options))
    what = "does not exist" if not root.exists() else "holds no saved index"
    msg = f"{str(path)!r} {what}; build one with `bge-integrations index build`."
    raise FileNotFoundError(msg)
