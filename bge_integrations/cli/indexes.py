"""The right index for a model (HybridIndex for BGE-M3, DenseIndex otherwise), saved and reopened.

``index build``, ``index query`` and the demo work on either kind through these helpers.
A saved :class:`DenseIndex` records where its model was loaded from in its manifest. Next to a
saved :class:`HybridIndex` :func:`save_index` writes ``model.json`` with the name or path the
embedder was loaded from, so :func:`open_index` reloads that exact copy (a local directory,
not only a hub id).

Example:
    >>> from bge_integrations.cli.indexes import new_index, open_index, save_index
    >>> index = new_index("BAAI/bge-m3")  # doctest: +SKIP
    >>> index.add(["BGE-M3 is multilingual."]); save_index(index, "my-index")  # doctest: +SKIP
    >>> open_index("my-index").search("multilingual model", k=1)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..core.embedder import BGEEmbedder
from ..core.m3 import HEAD_FILES, BGEM3Embedder
from ..core.registry import Family, find_spec
from ..retrieval import DenseIndex, HybridIndex
from ..retrieval.persistence import MANIFEST, saved_kind

__all__ = ["AnyIndex", "MODEL_FILE", "is_m3_model", "embedder_of", "new_index", "save_index",
           "open_index"]

AnyIndex = DenseIndex | HybridIndex
#: written next to a saved HybridIndex: the name or path its embedder was loaded from
MODEL_FILE = "model.json"


def is_m3_model(model: str) -> bool:
    """Whether ``model`` is BGE-M3-like: registry family ``m3``, or a directory with its heads."""
    spec = find_spec(model)
    if spec is not None:
        return spec.family is Family.M3
    path = Path(model).expanduser()
    return path.is_dir() and all((path / name).is_file() for name in HEAD_FILES.values())


def embedder_of(index: AnyIndex) -> BGEEmbedder | BGEM3Embedder:
    """The embedder behind either kind of index."""
    return index.m3 if isinstance(index, HybridIndex) else index.embedder


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


def save_index(index: AnyIndex, path: str | os.PathLike[str]) -> None:
    """Save either kind of index to directory ``path`` so :func:`open_index` can reopen it."""
    index.save(path)
    if isinstance(index, HybridIndex):
        target = Path(path) / MODEL_FILE
        staged = target.with_name(f".{MODEL_FILE}.tmp")
        staged.write_text(json.dumps({"model": index.m3.model_name}), encoding="utf-8")
        os.replace(staged, target)


def open_index(path: str | os.PathLike[str], *, model: str | None = None,
               **core_options: Any) -> AnyIndex:
    """Load a saved index with the model that built it.

    Args:
        path: the index directory.
        model: load this model instead of the recorded one (e.g. the index was moved to a
            machine where the model lives elsewhere); it must be the same model.
        **core_options: ``device``, ``dtype``, ``batch_size``, ``show_progress``, ...

    Raises:
        FileNotFoundError: ``path`` is not a directory holding a saved index.
    """
    root = Path(path).expanduser()
    kind = saved_kind(root)
    if kind == "dense":
        return DenseIndex.load(root, model=model, **core_options)
    if kind == "hybrid":
        return HybridIndex.load(root, BGEM3Embedder(model or _hybrid_model(root),
                                                    **core_options))
    what = "does not exist" if not root.exists() else "holds no saved index"
    msg = f"{str(path)!r} {what}; build one with `bge-integrations index build`."
    raise FileNotFoundError(msg)


def _hybrid_model(root: Path) -> str:
    recorded = root / MODEL_FILE
    if recorded.is_file():
        name = json.loads(recorded.read_text(encoding="utf-8")).get("model")
    else:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        name = manifest.get("model", {}).get("name")
    if not isinstance(name, str):
        msg = f"{str(root)!r}: the saved index names no model; pass model=... to open it."
        raise ValueError(msg)
    return name
