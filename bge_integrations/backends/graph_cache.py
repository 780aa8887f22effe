"""Exported graphs on disk: keyed by checkpoint, runtime and options; atomic; checksummed.

A graph lives in ``<cache>/graphs/<model>-<key>/`` (``<cache>`` is ``$BGE_INTEGRATIONS_CACHE``,
else ``~/.cache/bge_integrations``). The key hashes the checkpoint's fingerprint, the backend,
the runtime's, torch's and transformers' versions and the options (dtype, optimisation), so a
changed checkpoint or an upgraded runtime gets a new graph. ``manifest.json`` lists every file
with its SHA-256; a graph whose files do not match (damaged, truncated, half-written by an
older version) is rebuilt, never loaded. A build writes into a temporary sibling directory and
renames it into place, so readers never see a partial graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..offline import cache_dir

__all__ = ["checkpoint_fingerprint", "cached_graph", "graph_key", "GRAPH_FORMAT"]

#: bump when the layout or export recipe changes (old graphs then rebuild)
GRAPH_FORMAT = 1
_MANIFEST = "manifest.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".json", ".model", ".txt")
_EDGE = 1 << 20


def checkpoint_fingerprint(model_dir: str | os.PathLike[str]) -> str:
    """A hash of a checkpoint directory's files: each name and size, and the first and last
    MiB of its bytes (whole small files). Cheap on multi-GB weights; any re-download, edit or
    truncation changes it."""
    digest = hashlib.sha256()
    root = Path(model_dir)
    for path in sorted(p for p in root.iterdir() if p.is_file()
                       and p.name.endswith(_WEIGHT_SUFFIXES)):
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with path.open("rb") as f:
            digest.update(f.read(_EDGE))
            if size > 2 * _EDGE:
                f.seek(size - _EDGE)
                digest.update(f.read(_EDGE))
            elif size > _EDGE:
                digest.update(f.read())
    return digest.hexdigest()


def graph_key(parts: dict[str, Any]) -> str:
    """Stable hash of the key parts (JSON with sorted keys)."""
    text = json.dumps({**parts, "format": GRAPH_FORMAT}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _valid(directory: Path, key: str) -> bool:
    try:
        manifest = json.loads((directory / _MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        return manifest.get("key") == key and bool(files) and all(
            _sha256(directory / name) == checksum for name, checksum in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def cached_graph(model_name: str, parts: dict[str, Any],
                 build: Callable[[Path], None], *, root: Path | None = None) -> Path:
    """The directory of the graph for ``parts``, built by ``build(tmp_dir)`` when it is absent,
    stale or damaged.

    ``build`` writes its files into the directory it is given; they are checksummed into
    ``manifest.json`` and the directory is renamed into place.
    """
    key = graph_key(parts)
    base = (root or cache_dir()) / "graphs"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model_name).name or "model")[:60]
    target = base / f"{safe}-{key}"
    if _valid(target, key):
        return target
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{safe}-", dir=base))
    try:
        build(tmp)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {"key": key, "parts": parts, "files": files}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True),
                                     encoding="utf-8")
        for path in tmp.iterdir():
            with path.open("rb") as f:
                os.fsync(f.fileno())
        if target.exists():  # stale or damaged: move aside, then replace
            trash = Path(tempfile.mkdtemp(prefix=".old-", dir=base))
            os.replace(target, trash / "graph")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same graph first
            if not _valid(target, key):
                raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return target
