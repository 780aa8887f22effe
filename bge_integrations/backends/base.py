"""The backbone interface every backend implements, and the checks of its options."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol

import torch

__all__ = ["BACKENDS", "RUNTIME_BACKENDS", "Backbone", "BackendExportError", "check_backend",
           "import_runtime"]

#: valid ``backend=`` values
BACKENDS = ("torch", "onnx", "openvino", "auto")
#: backends that run an exported graph (CPU, float32 or int8)
RUNTIME_BACKENDS = ("onnx", "openvino")
#: backend -> (runtime module, pip extra that installs it); the export needs onnx + onnxscript
_EXTRAS = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}
_EXPORT_MODULES = ("onnx", "onnxscript")


class BackendExportError(RuntimeError):
    """The model could not be exported to (or run on) the requested backend."""


class Backbone(Protocol):
    """How a backbone runs: token ids and mask in, last hidden state out.

    ``first_token_only`` is a hint: a backbone may then return only the first token's state
    (shape ``(batch, 1, hidden)``), which is all CLS pooling reads; it may also ignore it.
    A backbone may also carry ``batch_tokens``, the padded-token budget per forward pass it
    runs best with; the engine then uses it in place of its per-device default.
    """

    name: str

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                 first_token_only: bool = False) -> torch.Tensor:
        """``(batch, seq)`` int64 ids and mask -> ``(batch, seq, hidden)`` float states."""
        ...


def check_backend(backend: object) -> str:
    """The backend name, or a ValueError that lists the valid ones."""
    if backend not in BACKENDS:
        msg = f"Unknown backend {backend!r}; valid values: {', '.join(map(repr, BACKENDS))}."
        raise ValueError(msg)
    return str(backend)


def import_runtime(backend: str) -> ModuleType:
    """The runtime module of ``backend``; an ImportError naming the extra when it is missing."""
    runtime, extra = _EXTRAS[backend]
    for module in (*_EXPORT_MODULES, runtime):
        try:
            loaded = importlib.import_module(module)
        except ImportError as exc:
            msg = (f"backend={backend!r} needs {module}, which is not installed: "
                   f"pip install 'bge-integrations[{extra}]' (or use backend='torch').")
            raise ImportError(msg) from exc
    return loaded
