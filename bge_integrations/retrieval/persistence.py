"""Index directories on disk: atomic, checksummed and versioned saves; no pickle anywhere.

Layout::

    <dir>/manifest.json     format, format_version, model fingerprint, config, and the size
                            and sha256 of every data file of the current generation
    <dir>/<generation>/     the data files (.npy arrays, .json documents) of one save

A save writes a new generation into ``<dir>/.tmp-<generation>``, fsyncs it, renames it to
``<dir>/<generation>``, then replaces ``manifest.json`` with ``os.replace`` (atomic on POSIX
and Windows); only after that is the previous generation removed. A crash at any point
leaves ``manifest.json`` naming a complete generation, so the previous index stays readable.
Loading checks the format and version, every file's size and sha256, and that the model is
the one that built the index (:func:`check_model`: name, dimensions, heads, and a probe text's
embeddings; :func:`check_dense_model`: dimension and the probe's dense embedding).

Both embedded indexes use this layout; the manifest's ``format`` names the kind of index
(:data:`FORMATS`): ``hybrid`` (:class:`~.index.HybridIndex`, BGE-M3) or ``dense``
(:class:`~.dense.DenseIndex`, any other model). Both keep their documents in ``docs.json``
(:func:`write_docs` / :func:`read_docs`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .contract import DocBatch

__all__ = ["IndexFileError", "IndexNotFoundError", "ModelMismatchError", "save_directory",
           "open_directory", "verify_manifest", "saved_kind", "expect_files", "reading",
           "load_array", "write_docs", "read_docs", "model_fingerprint", "check_model",
           "dense_fingerprint", "check_dense_model", "FORMAT", "FORMATS", "FORMAT_VERSION",
           "MANIFEST", "DOCS_FILE"]

#: index kind -> the ``format`` its manifest records
FORMATS = {"hybrid": "bge-integrations/hybrid-index", "dense": "bge-integrations/dense-index"}
#: the format of a HybridIndex (the only kind before DenseIndex moved onto this layout)
FORMAT = FORMATS["hybrid"]
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: manifest entry holding the sha256 of the rest of the manifest
MANIFEST_CHECKSUM = "manifest_sha256"
#: the documents (ids, texts, metadatas) of either kind
DOCS_FILE = "docs.json"
_LOADERS = {"hybrid": "HybridIndex.load", "dense": "DenseIndex.load"}
PROBE_TEXT = "BGE-M3 fingerprint: dense, sparse and multi-vector retrieval in 100+ languages."
#: cosine similarity a probe embedding must reach to count as "the same model"
PROBE_MIN_COSINE = 0.99
_GENERATION = re.compile(r"[0-9a-f]{32}")
_FILE_NAME = re.compile(r"[a-z][a-z0-9_]*\.(npy|json)")
_CHUNK = 1 << 20


class IndexFileError(ValueError):
    """A saved index is missing, corrupted, truncated, or in an unknown format."""


class IndexNotFoundError(IndexFileError, FileNotFoundError):
    """The directory holds no saved index at all (no manifest); also a ``FileNotFoundError``."""


class ModelMismatchError(ValueError):
    """The embedder given to ``load`` is not the model that built the index."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    if path.is_dir() and os.name != "posix":
        return  # directories cannot be opened for fsync on Windows
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kind(kind: str) -> str:
    if kind not in FORMATS:
        msg = f"kind must be one of {sorted(FORMATS)}, got {kind!r}."
        raise ValueError(msg)
    return FORMATS[kind]


def save_directory(directory: str | os.PathLike, write_files: Callable[[Path], dict[str, Any]],
                   *, kind: str = "hybrid") -> None:
    """Atomically save one index generation.

    Args:
        directory: the index directory (created if missing). An existing directory must be
            empty, hold a saved index, or hold only what a killed first save left behind.
        write_files: writes the data files into the folder it is given and returns the
            manifest fields that describe them (model, config, counts).
        kind: ``"hybrid"`` or ``"dense"``: the :data:`FORMATS` entry the manifest records.
    """
    fmt = _kind(kind)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root):
        _save_locked(root, fmt, write_files)


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the directory itself while saving (POSIX; else no lock).

    Saves into one directory then never overlap, so a save may delete what killed saves left.
    """
    try:
        import fcntl
    except ImportError:  # Windows: saves are still atomic, leftovers are kept
        yield
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _save_locked(root: Path, fmt: str, write_files: Callable[[Path], dict[str, Any]]) -> None:
    manifest_path = root / MANIFEST
    previous = _read_manifest(manifest_path).get("generation") if manifest_path.exists() else None
    if previous is None and any(not _left_by_a_save(p) for p in root.iterdir()):
        msg = (f"{str(root)!r} is not empty and holds no saved index; save into a new or "
               "empty directory (nothing there was changed).")
        raise ValueError(msg)
    generation = uuid.uuid4().hex
    tmp, final = root / f".tmp-{generation}", root / generation
    tmp.mkdir()
    try:
        fields = write_files(tmp)
        files = {}
        for path in sorted(tmp.iterdir()):
            _fsync(path)
            files[path.name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        _fsync(tmp)
        os.replace(tmp, final)
        manifest = {"format": fmt, "format_version": FORMAT_VERSION,
                    "generation": generation, **fields, "files": files}
        manifest[MANIFEST_CHECKSUM] = _manifest_checksum(manifest)
        staged = root / f".tmp-{generation}.json"
        staged.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        _fsync(staged)
        os.replace(staged, manifest_path)
        _fsync(root)
    except BaseException:
        for leftover in (tmp, final):
            shutil.rmtree(leftover, ignore_errors=True)
        (root / f".tmp-{generation}.json").unlink(missing_ok=True)
        raise
    for entry in root.iterdir():  # the previous generation and what killed saves left
        if entry.name not in (MANIFEST, generation) and _left_by_a_save(entry):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, without the checksum entry itself."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_CHECKSUM}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def verify_manifest(manifest: dict[str, Any], directory: str | os.PathLike) -> None:
    """Raise :class:`IndexFileError` unless the manifest still matches its own checksum.

    Loaders call this last, after their structural checks, so a damaged field that those
    checks catch is reported by name; an altered value that still looks valid (a changed
    ``rrf_k``) is caught here.
    """
    if manifest.get(MANIFEST_CHECKSUM) != _manifest_checksum(manifest):
        msg = (f"the manifest of {str(directory)!r} fails its checksum: it was altered or is "
               "corrupted. Restore it from a backup or rebuild the index.")
        raise IndexFileError(msg)


def _left_by_a_save(path: Path) -> bool:
    """A ``.tmp-*`` entry, or a generation folder of data files that no manifest names yet."""
    if path.name.startswith(".tmp-"):
        return True
    return (_GENERATION.fullmatch(path.name) is not None and path.is_dir()
            and not path.is_symlink() and all(_FILE_NAME.fullmatch(f.name) for f in path.iterdir()))


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{str(path)!r} cannot be read as JSON ({exc}); the saved index is corrupted."
        raise IndexFileError(msg) from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS.values():
        known = " or ".join(repr(f) for f in FORMATS.values())
        msg = f"{str(path)!r} is not a bge-integrations index manifest (format {known})."
        raise IndexFileError(msg)
    return manifest


def saved_kind(directory: str | os.PathLike) -> str | None:
    """The kind (``"hybrid"`` / ``"dense"``) of the index saved in ``directory``, or ``None``.

    ``None`` when there is no manifest; :class:`IndexFileError` when it is unreadable.
    """
    manifest_path = Path(directory) / MANIFEST
    if not manifest_path.is_file():
        return None
    return _kind_of(_read_manifest(manifest_path))


def _kind_of(manifest: dict[str, Any]) -> str:
    return next(kind for kind, fmt in FORMATS.items() if fmt == manifest["format"])


def open_directory(directory: str | os.PathLike, *, kind: str = "hybrid", verify: bool = True
                   ) -> tuple[dict[str, Any], Path]:
    """Read and check a saved index's manifest; return it and its generation folder.

    Args:
        directory: the index directory.
        kind: the kind of index expected (``"hybrid"`` or ``"dense"``).
        verify: check every file's sha256 (sizes are always checked).

    Raises:
        IndexNotFoundError: no manifest (an :class:`IndexFileError` and a ``FileNotFoundError``).
        IndexFileError: unknown format or version, an index of another kind, missing,
            truncated or altered data file.
    """
    fmt = _kind(kind)
    root = Path(directory)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        msg = (f"{str(root)!r} is not a {kind} index directory: it holds no saved index "
               f"(no {MANIFEST}); create one with index.save(directory).")
        raise IndexNotFoundError(msg)
    manifest = _read_manifest(manifest_path)
    if manifest["format"] != fmt:
        other = _kind_of(manifest)
        msg = (f"{str(root)!r} holds a {other} index, not a {kind} one; open it with "
               f"{_LOADERS[other]}.")
        raise IndexFileError(msg)
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        msg = (f"{str(root)!r} uses index format version {version!r}; this bge-integrations "
               f"reads version {FORMAT_VERSION}. Upgrade bge-integrations or rebuild the index.")
        raise IndexFileError(msg)
    generation, files = manifest.get("generation"), manifest.get("files")
    if not (isinstance(generation, str) and _GENERATION.fullmatch(generation)
            and isinstance(files, dict)):
        msg = f"{str(manifest_path)!r} is corrupted: bad 'generation' or 'files' entry."
        raise IndexFileError(msg)
    folder = root / generation
    for name, entry in files.items():
        if not (_FILE_NAME.fullmatch(name) and isinstance(entry, dict)
                and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)):
            msg = f"{str(manifest_path)!r} is corrupted: bad file entry {name!r}."
            raise IndexFileError(msg)
        path = folder / name
        if not path.is_file():
            msg = f"{str(path)!r} is missing; the saved index is incomplete."
            raise IndexFileError(msg)
        size = path.stat().st_size
        if size != entry["bytes"]:
            msg = (f"{str(path)!r} has {size} bytes, the manifest records {entry['bytes']}; "
                   "the file is truncated or was replaced.")
            raise IndexFileError(msg)
        if verify and _sha256(path) != entry["sha256"]:
            msg = (f"{str(path)!r} fails its sha256 check; the file is corrupted. Restore it "
                   "from a backup or rebuild the index.")
            raise IndexFileError(msg)
    return manifest, folder


def expect_files(manifest: dict[str, Any], expected: set[str], directory: str | os.PathLike
                 ) -> None:
    """Raise :class:`IndexFileError` unless the manifest lists exactly the ``expected`` files."""
    if set(manifest["files"]) != expected:
        msg = (f"the manifest of {str(directory)!r} lists files {sorted(manifest['files'])}, "
               f"expected {sorted(expected)}; the saved index is corrupted.")
        raise IndexFileError(msg)


@contextmanager
def reading(directory: str | os.PathLike) -> Iterator[None]:
    """Report a malformed saved file (``KeyError``, ``TypeError``, ``ValueError``) as an
    :class:`IndexFileError` naming ``directory``; an :class:`IndexFileError` passes as it is."""
    try:
        yield
    except IndexFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"the saved index in {str(directory)!r} is inconsistent: {exc}"
        raise IndexFileError(msg) from None


def write_docs(folder: Path, ids: Sequence[str], texts: Sequence[str],
               metadatas: Sequence[dict[str, Any]]) -> None:
    """Write the documents of a save to ``folder/docs.json``."""
    docs = {"ids": list(ids), "texts": list(texts), "metadatas": list(metadatas)}
    (folder / DOCS_FILE).write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")


def read_docs(folder: Path, count: int) -> DocBatch:
    """The documents of ``folder/docs.json``, validated as ``add`` validates them.

    Raises:
        KeyError, TypeError, ValueError: a malformed file, or not ``count`` documents
            (wrap the call in :func:`reading`).
    """
    docs = json.loads((folder / DOCS_FILE).read_text(encoding="utf-8"))
    ids, texts, metadatas = docs["ids"], docs["texts"], docs["metadatas"]
    batch = DocBatch.build(texts, metadatas, ids)
    if len(batch.ids) != count:
        msg = f"{DOCS_FILE} holds {len(batch.ids)} documents, the manifest says {count}."
        raise ValueError(msg)
    return batch


def load_array(path: Path, *, dtype: str, ndim: int, mmap: bool = False) -> np.ndarray:
    """Load one ``.npy`` file (never pickle) and check its dtype and rank."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        msg = f"{str(path)!r} is not a readable .npy array ({exc})."
        raise IndexFileError(msg) from None
    if array.dtype != np.dtype(dtype) or array.ndim != ndim:
        msg = (f"{str(path)!r} holds a {array.dtype} array of rank {array.ndim}, expected "
               f"{dtype} of rank {ndim}.")
        raise IndexFileError(msg)
    return array


def _probe(m3: Any, colbert: bool) -> dict[str, Any]:
    out = m3.encode_documents([PROBE_TEXT], dense=True, sparse=True, colbert=colbert)
    probe = {"dense": out.dense[0].tolist(),
             "sparse": {str(k): float(v) for k, v in sorted(out.sparse[0].items())}}
    if colbert:
        probe["colbert"] = out.colbert[0].mean(axis=0).tolist()
    return probe


def model_fingerprint(m3: Any, colbert: bool) -> dict[str, Any]:
    """What identifies the model behind an index: name, sizes, heads, probe embeddings."""
    return {"name": m3.spec.name, "dim": int(m3.dim), "vocab_size": int(m3.vocab_size),
            "heads": ["dense", "sparse", *(["colbert"] if colbert else [])],
            "probe": _probe(m3, colbert)}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm else float(np.array_equal(a, b))


def _differs(mine: Any, theirs: Any) -> bool:
    """Whether a probe output differs from the saved one (other shape, or cosine < 0.99)."""
    mine_arr = np.asarray(mine, dtype=np.float64)
    theirs_arr = np.asarray(theirs if theirs is not None else [], dtype=np.float64)
    return mine_arr.shape != theirs_arr.shape or _cosine(mine_arr, theirs_arr) < PROBE_MIN_COSINE


def check_model(saved: dict[str, Any], m3: Any) -> None:
    """Raise :class:`ModelMismatchError` unless ``m3`` is the model that built the index."""
    name = saved.get("name")
    fix = f"load it with BGEM3Embedder({name!r}) or rebuild the index with this model."
    for key, mine in (("name", m3.spec.name), ("dim", m3.dim), ("vocab_size", m3.vocab_size)):
        if saved.get(key) != mine:
            msg = (f"The index was built with {key}={saved.get(key)!r}, this model has "
                   f"{mine!r}; {fix}")
            raise ModelMismatchError(msg)
    colbert = "colbert" in saved.get("heads", [])
    try:
        probe = _probe(m3, colbert)
    except FileNotFoundError as exc:
        msg = f"The index needs the model's {saved.get('heads')} outputs: {exc}"
        raise ModelMismatchError(msg) from None
    stored = saved.get("probe", {})
    tokens = sorted(set(probe["sparse"]) | set(stored.get("sparse", {})))
    pairs = {
        "dense": (probe["dense"], stored.get("dense")),
        "sparse": ([probe["sparse"].get(t, 0.0) for t in tokens],
                   [stored.get("sparse", {}).get(t, 0.0) for t in tokens]),
    }
    if colbert:
        pairs["colbert"] = (probe["colbert"], stored.get("colbert"))
    for head, (mine, theirs) in pairs.items():
        if _differs(mine, theirs):
            msg = (f"The {head} output of this model differs from the model that built the "
                   f"index (same name {name!r}, different weights); {fix}")
            raise ModelMismatchError(msg)


def dense_fingerprint(embedder: Any) -> dict[str, Any]:
    """What identifies the model behind a dense index, and how to load it again.

    ``source`` is the hub id or path the embedder was loaded from; pooling and the query
    instruction are recorded so that ``DenseIndex.load`` can rebuild the same embedder.
    """
    spec = embedder.spec
    return {"name": spec.name, "source": embedder.model_name, "dim": int(embedder.dim),
            "pooling": spec.pooling.value, "query_instruction": spec.query_instruction,
            "query_instruction_format": spec.query_instruction_format, "heads": ["dense"],
            "probe": {"dense": embedder.encode_documents([PROBE_TEXT])[0].tolist()}}


def check_dense_model(saved: dict[str, Any], embedder: Any) -> None:
    """Raise :class:`ModelMismatchError` unless ``embedder`` is the model that built the index.

    The dimension and a probe text's embedding must match; the name need not, so a renamed
    or moved copy of the model is accepted.
    """
    source = saved.get("source")
    fix = f"query it with the model it was built with ({source!r})."
    if saved.get("dim") != embedder.dim:
        msg = (f"The index holds {saved.get('dim')}-d vectors but the embedder makes "
               f"{embedder.dim}-d ones; {fix}")
        raise ModelMismatchError(msg)
    probe = embedder.encode_documents([PROBE_TEXT])[0]
    if _differs(probe, saved.get("probe", {}).get("dense")):
        msg = (f"The embeddings of this model differ from those of the model that built the "
               f"index (other weights, pooling or dtype); {fix}")
        raise ModelMismatchError(msg)
