"""``backend="auto"``: the backend measured fastest for this model on this CPU, remembered.

The rule, in order:

1. Not on a CPU (CUDA/MPS), or a dtype the runtimes do not offer (float16, bfloat16): torch.
2. Otherwise every installed candidate (torch, then ONNX Runtime, then OpenVINO) that loads
   for the model is timed through the engine's own loop on the same synthetic batch (16 texts
   of 128 tokens, the best of 3 runs after a warm-up); the fastest wins. A runtime whose
   export fails is left out of the race (torch always runs), so the choice is never slower
   than torch on that batch. Float32 outputs of every candidate agree within 1e-5.
3. The choice is written to ``<cache>/backend-choice.json`` keyed by the checkpoint's
   fingerprint, the dtype, the CPU flags, the thread count and the libraries' versions; later
   loads read it and load only the winner.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.hardware import cpu_flags, resolve_device
from ..offline import cache_dir
from .base import RUNTIME_BACKENDS
from .build import RUNTIME_DTYPES, graph_parts

if TYPE_CHECKING:
    from ..core.loading import LoadedModel

__all__ = ["choose_backend", "time_backend", "CHOICE_FILE"]

CHOICE_FILE = "backend-choice.json"
_TEXTS, _TOKENS, _RUNS = 16, 128, 3
_LOCK = threading.Lock()


def _choice_key(model_dir: str, dtype: str, model_class: str) -> str:
    parts = graph_parts("onnx", dtype, model_dir, optimize=True)
    parts["model_class"] = model_class
    parts["openvino"] = graph_parts("openvino", dtype, model_dir, optimize=False)["runtime"]
    parts["cpu"] = sorted(cpu_flags())
    parts["threads"] = torch.get_num_threads()
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _read_choices() -> dict[str, Any]:
    try:
        data = json.loads((cache_dir() / CHOICE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_choice(key: str, record: dict[str, Any]) -> None:
    path = cache_dir() / CHOICE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    choices = {**_read_choices(), key: record}
    fd, tmp = tempfile.mkstemp(prefix=".choice-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(choices, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def time_backend(loaded: LoadedModel) -> float:
    """Seconds for the engine to run the synthetic batch on ``loaded`` (best of 3)."""
    from ..core.engine import Engine

    vocab = int(getattr(loaded.config, "vocab_size", 1000))
    rng = np.random.default_rng(0)
    rows = rng.integers(min(100, vocab - 1), vocab, size=(_TEXTS, _TOKENS)).tolist()
    engine = Engine(loaded)

    def head(hidden: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> list[None]:
        return [None] * len(ids)

    engine.run(rows, head)
    best = float("inf")
    for _ in range(_RUNS):
        start = time.perf_counter()
        engine.run(rows, head)
        best = min(best, time.perf_counter() - start)
    return best


def choose_backend(name_or_path: str, *, device: Any, dtype: Any, trust_remote_code: bool,
                   show_progress: bool, model_class: Any = None) -> LoadedModel:
    """Load the model on the backend :mod:`this rule <.auto>` picks."""
    from ..backends.base import BackendExportError
    from ..core.loading import forget_model, load_model
    from ..core.resolve import resolve_model_dir

    def load(backend: str) -> LoadedModel:
        return load_model(name_or_path, device=device, dtype=dtype,
                          trust_remote_code=trust_remote_code, show_progress=show_progress,
                          backend=backend, model_class=model_class)

    dtype_name = "float32" if dtype in (None, "auto") else str(dtype)
    if resolve_device(device).type != "cpu" or dtype_name not in RUNTIME_DTYPES:
        return load("torch")
    installed = [b for b in RUNTIME_BACKENDS if _installed(b)]
    if not installed:
        return load("torch")
    key = _choice_key(resolve_model_dir(name_or_path), dtype_name,
                      getattr(model_class, "__qualname__", "AutoModel"))
    with _LOCK:
        known = _read_choices().get(key)
        if isinstance(known, dict) and known.get("backend") in ("torch", *installed):
            with contextlib.suppress(BackendExportError):
                return load(known["backend"])
        best = load("torch")  # always a candidate; its errors are the model's own
        timings = {"torch": time_backend(best)}
        for backend in installed:
            try:
                candidate = load(backend)
            except BackendExportError:
                continue
            timings[backend] = time_backend(candidate)
            if timings[backend] < timings[best.backend]:
                forget_model(best)
                best = candidate
            else:
                forget_model(candidate)
        _write_choice(key, {"backend": best.backend, "seconds": timings,
                            "model": os.path.basename(os.fspath(name_or_path))})
        return best


def _installed(backend: str) -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime" if backend == "onnx" else "openvino") \
        is not None
