"""Index directories on disk: atomic, checksummed, versioned saves; no pickle anywhere.

Layout::

    <dir>/manifest.json       format, format_version, model fingerprint, config, the size and
                              sha256 of every data file of the current generation, and the
                              generations this index retired (``retired``)
    <dir>/<generation>/       the data files (.npy arrays, .json documents) of one save
    <dir>/.bge-index.lock     readers' lock, and the generation a save in progress writes

A save writes a new generation into ``<dir>/.tmp-<generation>`` with ordinary file writes,
fsyncs it, renames it to ``<dir>/<generation>``, then replaces ``manifest.json`` with
``os.replace`` (atomic on POSIX and Windows). A crash at any point leaves ``manifest.json``
naming a complete generation. A full disk (``ENOSPC``, ``EDQUOT``, ``EFBIG``) raises an
``OSError`` that says so; the previous save stays as it was.

What a save deletes: only what this index's own records name: the generations listed in the
manifest's ``retired`` history (and only the data files recorded for them), and what a killed
save left under the generation name it had recorded in the lock file first. Nothing else in
the directory is touched.

Processes: saves into one directory are serialised by an exclusive ``flock`` on the directory.
Loads hold a shared ``flock`` on the lock file while they read; a save removes retired
generations only when it can take that lock at once, and otherwise leaves them to a later
save, so a reader always gets a whole generation (old or new), never a missing file.

Loading checks, before using anything, every manifest field (types, bounds) and every array's
header (dtype, shape against the manifest's counts, size against the file), so a crafted or
damaged directory raises :class:`IndexFileError`, never a crash, a hang or a huge allocation.
The model check lives in :mod:`.identity`.

Both embedded indexes use this layout; the manifest's ``format`` names the kind of index
(:data:`FORMATS`): ``hybrid`` (:class:`~.index.HybridIndex`) or ``dense``
(:class:`~.dense.DenseIndex`). The data file names are :data:`FILES`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .contract import DocBatch
from .errors import DISK_FULL, IndexFileError, IndexNotFoundError, ModelMismatchError

__all__ = ["IndexFileError", "IndexNotFoundError", "ModelMismatchError", "save_directory",
           "open_directory", "verify_manifest", "saved_kind", "expect_files", "reading",
           "load_array", "write_array", "load_json", "write_docs", "read_docs",
           "manifest_field", "FILES", "FORMAT", "FORMATS", "FORMAT_VERSION", "MANIFEST",
           "DOCS_FILE", "LOCK_FILE", "DISK_FULL"]

#: index kind -> the ``format`` its manifest records
FORMATS = {"hybrid": "bge-integrations/hybrid-index", "dense": "bge-integrations/dense-index"}
#: the format of a HybridIndex (the only kind before DenseIndex moved onto this layout)
FORMAT = FORMATS["hybrid"]
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: readers' lock; holds the generation a save in progress is writing
LOCK_FILE = ".bge-index.lock"
#: manifest entry holding the sha256 of the rest of the manifest
MANIFEST_CHECKSUM = "manifest_sha256"
#: the data files of a generation, named once: role -> file name
FILES = {"docs": "docs.json", "dense": "dense.npy", "sparse_indptr": "sparse_indptr.npy",
         "sparse_indices": "sparse_indices.npy", "sparse_values": "sparse_values.npy",
         "colbert": "colbert.npy", "colbert_offsets": "colbert_offsets.npy"}
#: the documents (ids, texts, metadatas) of either kind
DOCS_FILE = FILES["docs"]
_LOADERS = {"hybrid": "HybridIndex.load", "dense": "DenseIndex.load"}
_GENERATION = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_NAME = re.compile(r"[a-z][a-z0-9_]*\.(npy|json)")
_CHUNK = 1 << 20
#: bounds on what a manifest may claim
MAX_MANIFEST_BYTES = 64 << 20
MAX_FILE_BYTES = 1 << 50
MAX_FILES = 32
MAX_RETIRED = 1024
_NO_GENERATION = b"-" * 32


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


def _flock(fd: int, operation: str, *, blocking: bool = True) -> bool:
    """``flock`` (``"sh"``, ``"ex"``, ``"un"``) where the platform and file system have it;
    False only when ``blocking=False`` and another process holds a conflicting lock."""
    try:
        import fcntl
    except ImportError:  # Windows: files in use cannot be deleted there anyway
        return True
    flag = {"sh": fcntl.LOCK_SH, "ex": fcntl.LOCK_EX, "un": fcntl.LOCK_UN}[operation]
    if not blocking:
        flag |= fcntl.LOCK_NB
    try:
        fcntl.flock(fd, flag)
    except BlockingIOError:
        return False
    except OSError:  # a file system without flock (some network mounts): no lock to take
        return True
    return True


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def save_directory(directory: str | os.PathLike, write_files: Callable[[Path], dict[str, Any]],
                   *, kind: str = "hybrid") -> None:
    """Atomically save one index generation.

    Args:
        directory: the index directory (created if missing). An existing directory must be
            empty, hold a saved index, or hold only what a killed first save left behind.
        write_files: writes the data files into the folder it is given and returns the
            manifest fields that describe them (model, config, counts).
        kind: ``"hybrid"`` or ``"dense"``: the :data:`FORMATS` entry the manifest records.

    Raises:
        OSError: the disk is full, the quota or the file size limit is reached (the message
            says so; nothing was changed), or another I/O error.
        ValueError: the directory holds other files and no saved index.
    """
    fmt = _kind(kind)
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _exclusive(root):
            _save_locked(root, fmt, write_files)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            msg = (f"cannot save the index into {str(root)!r}: {os.strerror(exc.errno)} "
                   "(disk full, quota or file size limit). Nothing was changed: the previous "
                   "save is still complete and the index in memory is as it was. Free some "
                   "space and call save() again.")
            raise OSError(exc.errno, msg) from exc
        raise


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the directory itself while saving: saves never overlap."""
    fd = os.open(root, os.O_RDONLY)
    try:
        _flock(fd, "ex")
        yield
    finally:
        os.close(fd)


def _pending(root: Path) -> str | None:
    """The generation a save recorded before writing it (a killed save's, if still there)."""
    try:
        with open(root / LOCK_FILE, "rb", opener=_no_follow) as f:
            name = f.read(32).decode("ascii", "replace")
    except OSError:
        return None
    return name if _GENERATION.fullmatch(name) else None


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | _NOFOLLOW)


def _record_pending(lock_fd: int, generation: str | None) -> None:
    data = _NO_GENERATION if generation is None else generation.encode("ascii")
    if hasattr(os, "pwrite"):
        os.pwrite(lock_fd, data, 0)
    else:
        os.lseek(lock_fd, 0, os.SEEK_SET)
        os.write(lock_fd, data)
    os.fsync(lock_fd)


def _remove_pending(root: Path, generation: str) -> None:
    """Remove what a killed save of ``generation`` left: only names it writes."""
    (root / f".tmp-{generation}.json").unlink(missing_ok=True)
    for folder in (root / f".tmp-{generation}", root / generation):
        _remove_generation(folder, FILES.values())


def _remove_generation(folder: Path, names: Sequence[str] | Any) -> None:
    """Delete the named data files of a generation folder, then the folder if it is empty."""
    if folder.is_symlink() or not folder.is_dir():
        return
    for name in names:
        path = folder / name
        if _FILE_NAME.fullmatch(name) and (path.is_file() or path.is_symlink()):
            path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # something we did not write is inside: leave it
        pass


def _save_locked(root: Path, fmt: str, write_files: Callable[[Path], dict[str, Any]]) -> None:
    manifest_path = root / MANIFEST
    previous = _read_manifest(manifest_path) if manifest_path.exists() else None
    pending = _pending(root)
    current = None if previous is None else previous.get("generation")
    if previous is None:
        ours = {LOCK_FILE} | ({f".tmp-{pending}", pending, f".tmp-{pending}.json"}
                              if pending else set())
        if any(p.name not in ours for p in root.iterdir()):
            msg = (f"{str(root)!r} is not empty and holds no saved index; save into a new "
                   "or empty directory (nothing there was changed).")
            raise ValueError(msg)
    lock_fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
    try:
        if pending and pending != current:
            _remove_pending(root, pending)
        generation = uuid.uuid4().hex
        _record_pending(lock_fd, generation)
        retired = _retired(root, previous)
        _write_generation(root, fmt, generation, retired, write_files)
        _tidy(root, lock_fd, retired)
    finally:
        os.close(lock_fd)


def _tidy(root: Path, lock_fd: int, retired: list[dict[str, Any]]) -> None:
    """After the manifest switch: make it durable and remove retired generations, at best.

    The save has happened by now, so an ``OSError`` here is not reported: what was not
    removed stays listed in the manifest's ``retired`` history for the next save.
    """
    try:
        _fsync(root)
        _record_pending(lock_fd, None)
        if _flock(lock_fd, "ex", blocking=False):  # no reader is between manifest and files
            try:
                for entry in retired:
                    _remove_generation(root / entry["generation"], entry["files"])
            finally:
                _flock(lock_fd, "un")
    except OSError:
        pass


def _retired(root: Path, previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The generations the new manifest retires: the previous one and those it retired that
    are still on disk; none at all when the previous manifest fails its checksum."""
    if previous is None or previous.get(MANIFEST_CHECKSUM) != _manifest_checksum(previous):
        return []
    entries = previous.get("retired", [])
    entries = entries if isinstance(entries, list) else []
    files = previous.get("files")
    entries = [{"generation": previous.get("generation"),
                "files": sorted(files) if isinstance(files, dict) else []}, *entries]
    out = []
    for entry in entries[:MAX_RETIRED]:
        if not isinstance(entry, dict):
            continue
        generation, names = entry.get("generation"), entry.get("files")
        if (isinstance(generation, str) and _GENERATION.fullmatch(generation)
                and isinstance(names, list) and len(names) <= MAX_FILES
                and all(isinstance(n, str) and _FILE_NAME.fullmatch(n) for n in names)
                and (root / generation).is_dir()):
            out.append({"generation": generation, "files": names})
    return out


def _write_generation(root: Path, fmt: str, generation: str, retired: list[dict[str, Any]],
                      write_files: Callable[[Path], dict[str, Any]]) -> None:
    tmp, final = root / f".tmp-{generation}", root / generation
    staged = root / f".tmp-{generation}.json"
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
                    "generation": generation, **fields, "files": files, "retired": retired}
        manifest[MANIFEST_CHECKSUM] = _manifest_checksum(manifest)
        with staged.open("x", encoding="utf-8") as f:
            f.write(json.dumps(manifest, indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.replace(staged, root / MANIFEST)
    except BaseException:
        if _current_generation(root) != generation:  # interrupted before the switch: undo
            for folder in (tmp, final):
                _remove_generation(folder, FILES.values())
            staged.unlink(missing_ok=True)
        raise


def _current_generation(root: Path) -> str | None:
    try:
        return _read_manifest(root / MANIFEST).get("generation")
    except (OSError, IndexFileError):
        return None


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


def load_json(path: Path, max_bytes: int) -> Any:
    """Parse a JSON file of at most ``max_bytes``: :class:`IndexFileError` when it is too big,
    not UTF-8 JSON, too deeply nested or holds numbers beyond bounds (an I/O error stays an
    ``OSError``)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read() if size <= max_bytes else b""
        if size > max_bytes or len(raw) > max_bytes:
            msg = f"{str(path)!r} is over {max_bytes} bytes; the saved index is corrupted."
            raise IndexFileError(msg)
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except IndexFileError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        msg = f"{str(path)!r} cannot be read as JSON ({type(exc).__name__}: {exc!s:.200})."
        raise IndexFileError(msg) from None


def _no_constant(name: str) -> None:
    msg = f"{name} is not a JSON number"
    raise ValueError(msg)


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest = load_json(path, MAX_MANIFEST_BYTES)
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


@contextmanager
def open_directory(directory: str | os.PathLike, *, kind: str = "hybrid", verify: bool = True
                   ) -> Iterator[tuple[dict[str, Any], Path]]:
    """Hold the directory's readers' lock; yield its checked manifest and generation folder.

    Read every file inside the ``with`` block: a concurrent save in another process never
    deletes the generation before the block ends.

    Args:
        directory: the index directory.
        kind: the kind of index expected (``"hybrid"`` or ``"dense"``).
        verify: check every file's sha256 (sizes are always checked).

    Raises:
        IndexNotFoundError: no manifest (an :class:`IndexFileError` and a ``FileNotFoundError``).
        IndexFileError: unknown format or version, an index of another kind, a malformed
            manifest entry, a missing, truncated or altered data file.
    """
    fmt = _kind(kind)
    root = Path(directory)
    try:
        lock_fd = os.open(root / LOCK_FILE, os.O_RDONLY | _NOFOLLOW)
    except OSError:  # no lock file (saved by an older version, or not an index): no writer
        lock_fd = None  # of this version is deleting here
    try:
        if lock_fd is not None:
            _flock(lock_fd, "sh")
        yield _checked_manifest(root, fmt, kind, verify)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def _checked_manifest(root: Path, fmt: str, kind: str, verify: bool
                      ) -> tuple[dict[str, Any], Path]:
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
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        msg = (f"{str(root)!r} uses index format version {version!r:.40}; this "
               f"bge-integrations reads version {FORMAT_VERSION}. Upgrade bge-integrations or "
               "rebuild the index.")
        raise IndexFileError(msg)
    generation, files = manifest.get("generation"), manifest.get("files")
    if not (isinstance(generation, str) and _GENERATION.fullmatch(generation)
            and isinstance(files, dict) and len(files) <= MAX_FILES):
        msg = f"{str(manifest_path)!r} is corrupted: bad 'generation' or 'files' entry."
        raise IndexFileError(msg)
    folder = root / generation
    for name, entry in files.items():
        if not (_FILE_NAME.fullmatch(name) and isinstance(entry, dict)
                and type(entry.get("bytes")) is int and 0 <= entry["bytes"] <= MAX_FILE_BYTES
                and isinstance(entry.get("sha256"), str) and _SHA256.fullmatch(entry["sha256"])):
            msg = f"{str(manifest_path)!r} is corrupted: bad file entry {name!r:.80}."
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


def manifest_field(manifest: dict[str, Any], path: str, kind: type | tuple[type, ...], *,
                   low: int | None = None, high: int | None = None,
                   choices: Sequence[Any] | None = None) -> Any:
    """One manifest entry (``"config.rrf_k"``), checked: type (``bool`` is not an ``int``),
    bounds, or one of ``choices``; :class:`IndexFileError` naming the entry otherwise.

    Example:
        >>> manifest_field({"config": {"rrf_k": 60}}, "config.rrf_k", int, low=1, high=10**6)
        60
    """
    value: Any = manifest
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if ok and isinstance(value, int | float) and not isinstance(value, bool):
        ok = (isinstance(value, int) or math.isfinite(value)) and (
            low is None or value >= low) and (high is None or value <= high)
    if ok and choices is not None:
        ok = value in choices
    if not ok:
        bounds = f" in [{low}, {high}]" if low is not None or high is not None else ""
        allowed = f" one of {list(choices)}" if choices is not None else ""
        msg = (f"the manifest entry {path!r} = {value!r:.60} is invalid (expected "
               f"{'/'.join(k.__name__ for k in kinds)}{bounds}{allowed}); the saved index is "
               "corrupted.")
        raise IndexFileError(msg)
    return value


def expect_files(manifest: dict[str, Any], expected: set[str], directory: str | os.PathLike
                 ) -> None:
    """Raise :class:`IndexFileError` unless the manifest lists exactly the ``expected`` files."""
    if set(manifest["files"]) != expected:
        msg = (f"the manifest of {str(directory)!r} lists files {sorted(manifest['files'])}, "
               f"expected {sorted(expected)}; the saved index is corrupted.")
        raise IndexFileError(msg)


@contextmanager
def reading(directory: str | os.PathLike) -> Iterator[None]:
    """Report a malformed saved file (``KeyError``, ``TypeError``, ``ValueError``,
    ``RecursionError``, ``OverflowError``, ``MemoryError``) as an :class:`IndexFileError` naming
    ``directory``; an :class:`IndexFileError` passes as it is."""
    try:
        yield
    except IndexFileError:
        raise
    except (KeyError, TypeError, ValueError, RecursionError, OverflowError, MemoryError) as exc:
        msg = f"the saved index in {str(directory)!r} is inconsistent: {exc!s:.300}"
        raise IndexFileError(msg) from None


def write_docs(folder: Path, ids: Sequence[str], texts: Sequence[str],
               metadatas: Sequence[dict[str, Any]]) -> None:
    """Write the documents of a save to ``folder/docs.json``."""
    docs = {"ids": list(ids), "texts": list(texts), "metadatas": list(metadatas)}
    with (folder / DOCS_FILE).open("x", encoding="utf-8") as f:
        f.write(json.dumps(docs, ensure_ascii=False))


def read_docs(folder: Path, count: int) -> DocBatch:
    """The documents of ``folder/docs.json``, validated as ``add`` validates them.

    Raises:
        IndexFileError: unreadable JSON; KeyError, TypeError, ValueError: a malformed file,
            or not ``count`` documents (wrap the call in :func:`reading`).
    """
    path = folder / DOCS_FILE
    docs = load_json(path, MAX_FILE_BYTES)
    if not isinstance(docs, dict):
        msg = f"{DOCS_FILE} must hold a JSON object"
        raise TypeError(msg)
    batch = DocBatch.build(docs["texts"], docs["metadatas"], docs["ids"])
    if len(batch.ids) != count:
        msg = f"{DOCS_FILE} holds {len(batch.ids)} documents, the manifest says {count}."
        raise ValueError(msg)
    return batch


def load_array(path: Path, *, dtype: str, shape: Sequence[int | None], mmap: bool = False
               ) -> np.ndarray:
    """Load one ``.npy`` file (never pickle) after checking its header against expectations.

    Args:
        path: the file.
        dtype: the dtype it must hold.
        shape: the shape it must have; ``None`` for a dimension that may be any size.
        mmap: map it read-only instead of reading it.

    Raises:
        IndexFileError: an unreadable header, another dtype or shape, Fortran order, or a
            file size that does not match the header (checked before anything is allocated).
    """
    want = np.dtype(dtype)
    try:
        with path.open("rb") as f:
            major, _minor = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if major == 1
                           else np.lib.format.read_array_header_2_0)
            got_shape, fortran, got_dtype = read_header(f)
            offset = f.tell()
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
        msg = f"{str(path)!r} is not a readable .npy array ({exc!s:.200})."
        raise IndexFileError(msg) from None
    if (got_dtype != want or fortran or len(got_shape) != len(shape)
            or any(type(d) is not int or d < 0 for d in got_shape)
            or any(w is not None and d != w for d, w in zip(got_shape, shape, strict=False))):
        expected = tuple("any" if w is None else w for w in shape)
        msg = (f"{str(path)!r} holds {got_dtype} {got_shape}"
               f"{' (Fortran order)' if fortran else ''}, expected {want} {expected}.")
        raise IndexFileError(msg)
    nbytes = math.prod(got_shape) * want.itemsize
    size = path.stat().st_size
    if size != offset + nbytes:
        msg = (f"{str(path)!r} is {size} bytes but its header describes {offset + nbytes}; "
               "the file is truncated or crafted.")
        raise IndexFileError(msg)
    if mmap and nbytes:
        return np.memmap(path, dtype=want, mode="r", offset=offset,
                         shape=tuple(got_shape)).view(np.ndarray)
    with path.open("rb") as f:
        f.seek(offset)
        return np.fromfile(f, dtype=want, count=math.prod(got_shape)).reshape(got_shape)


def write_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as a new ``.npy`` file with ordinary writes."""
    with path.open("xb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
