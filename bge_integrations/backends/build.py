"""Build (or reuse from the graph cache) the backbone of a runtime backend."""

from __future__ import annotations

import importlib.metadata
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..core.engine import DEFAULT_CPU_WORKERS
from .base import RUNTIME_BACKENDS, Backbone, import_runtime
from .calibration import CalibrationSet
from .export import (
    ONNX_FILE,
    OPENVINO_FILE,
    OPSET,
    export_onnx,
    optimize_onnx,
    quantize_onnx_int8,
    resave_onnx,
    to_openvino_ir,
)
from .graph_cache import cached_graph, checkpoint_fingerprint
from .runtime_backbones import STATIC_INT8_SHAPE_CACHE, OnnxBackbone, OpenVinoBackbone

__all__ = ["build_runtime_backbone", "RUNTIME_DTYPES", "runtime_threads"]

#: compute dtypes the runtime backends offer
RUNTIME_DTYPES = ("float32", "int8")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def runtime_threads() -> int:
    """Threads of one ONNX Runtime request: torch's thread count shared by the engine's CPU
    workers, which run requests side by side, as the torch backend shares it. (OpenVINO runs
    one request at a time on every thread: :class:`.runtime_backbones.OpenVinoBackbone`.)"""
    total = max(1, torch.get_num_threads())
    return max(1, total // min(DEFAULT_CPU_WORKERS, total))


def graph_parts(backend: str, dtype: str, model_dir: str, *, optimize: bool,
                calibration: CalibrationSet | None = None) -> dict[str, Any]:
    """What the cached graph depends on (its cache key)."""
    runtime = "onnxruntime" if backend == "onnx" else "openvino"
    parts = {"checkpoint": checkpoint_fingerprint(model_dir), "backend": backend,
             "dtype": dtype, "optimize": optimize, "runtime": _version(runtime),
             "onnx": _version("onnx"), "opset": OPSET, "torch": torch.__version__,
             "transformers": _version("transformers")}
    if calibration is not None:
        parts.update(calibration=calibration.key, nncf=_version("nncf"))
    return parts


def export_parts(parts: dict[str, Any]) -> dict[str, Any]:
    """The cache key of the plain float32 export the runtime graphs are built from."""
    return {"stage": "export", **{k: parts[k] for k in ("checkpoint", "onnx", "opset", "torch",
                                                          "transformers")}}


def build_runtime_backbone(backend: str, dtype: str, model_name: str, model_dir: str,
                           config: Any, load_torch: Callable[[], torch.nn.Module], *,
                           optimize: bool = True,
                           calibration: CalibrationSet | None = None) -> Backbone:
    """The ``backend`` backbone for the checkpoint in ``model_dir``.

    The graph comes from the cache (:mod:`.graph_cache`) or is exported from
    ``load_torch()`` (the checked float32 model) and cached; the torch model is not kept.
    ``calibration`` (OpenVINO int8 only) makes the int8 scales static (:mod:`.calibration`).
    """
    if backend not in RUNTIME_BACKENDS:
        msg = f"{backend!r} is not a runtime backend; valid: {', '.join(RUNTIME_BACKENDS)}."
        raise ValueError(msg)
    if dtype not in RUNTIME_DTYPES:
        msg = (f"backend={backend!r} runs dtype 'float32' or 'int8', not {dtype!r}; "
               "use backend='torch' for float16/bfloat16.")
        raise ValueError(msg)
    if calibration is not None and (backend, dtype) != ("openvino", "int8"):
        msg = f"int8 calibration runs on backend='openvino', dtype='int8', not {backend}/{dtype}."
        raise ValueError(msg)
    import_runtime(backend)  # the extra's ImportError before any export work
    parts = graph_parts(backend, dtype, model_dir, optimize=optimize and backend == "onnx",
                        calibration=calibration)

    def export(out: Path) -> None:
        export_onnx(load_torch(), out, model_name)

    def build(out: Path) -> None:
        # one float32 export per checkpoint, shared by every backend and dtype built from it
        raw = cached_graph(model_name, export_parts(parts), export) / ONNX_FILE
        if backend == "openvino":
            to_openvino_ir(raw, out, model_name, int8=dtype == "int8", calibration=calibration)
            return
        with tempfile.TemporaryDirectory(prefix="bge-export-") as work_dir:
            final = out / ONNX_FILE
            fused = Path(work_dir) / "fused.onnx" if dtype == "int8" else final
            if parts["optimize"]:
                optimize_onnx(raw, fused, config, model_name)
            else:
                resave_onnx(raw, fused)
            if dtype == "int8":
                quantize_onnx_int8(fused, final, model_name)

    graph = cached_graph(model_name, parts, build)
    if backend == "onnx":
        return OnnxBackbone(graph / ONNX_FILE, threads=runtime_threads())
    return OpenVinoBackbone(graph / OPENVINO_FILE, threads=max(1, torch.get_num_threads()),
                            shape_cache=None if calibration is None else STATIC_INT8_SHAPE_CACHE)
