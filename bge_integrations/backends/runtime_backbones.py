"""Backbones that run an exported graph: ONNX Runtime and OpenVINO (CPU)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch

from .base import import_runtime

__all__ = ["OnnxBackbone", "OpenVinoBackbone"]


def _feeds(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, np.ndarray]:
    return {"input_ids": input_ids.cpu().numpy().astype(np.int64, copy=False),
            "attention_mask": attention_mask.cpu().numpy().astype(np.int64, copy=False)}


class OnnxBackbone:
    """An ONNX Runtime session over ``model.onnx`` (CPU execution provider).

    Calls may come from several engine workers at once (``InferenceSession.run`` is thread
    safe); each runs on ``threads`` intra-op threads.

    Example:
        >>> backbone = OnnxBackbone(graph_dir / "model.onnx", threads=1)  # doctest: +SKIP
        >>> backbone(ids, mask).shape  # doctest: +SKIP
        torch.Size([2, 7, 384])
    """

    name = "onnx"

    def __init__(self, path: Path, *, threads: int) -> None:
        ort = import_runtime("onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options,
                                             providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                 first_token_only: bool = False) -> torch.Tensor:
        (hidden,) = self._session.run(["last_hidden_state"], _feeds(input_ids, attention_mask))
        return torch.from_numpy(hidden)


#: compiled kernels OpenVINO (its runtime cache) and its oneDNN (primitive cache) keep per
#: input shape, for static int8 graphs; length-sorted batches bring hundreds of shapes, and with
#: the default capacities (5,000 and 1,024) a static int8 graph's kernels held 940 MiB on MiniLM
#: and 2.2 GB on bge-small after 5,000 texts
STATIC_INT8_SHAPE_CACHE = 64


class OpenVinoBackbone:
    """An OpenVINO model compiled for the CPU, float32 precision kept (``f32`` inference hint:
    on CPUs with bf16 OpenVINO would otherwise compute in bf16).

    One stream on ``threads`` threads, one infer request: the engine's workers take turns (a
    lock), and each inference uses every thread. Two streams side by side (one per worker)
    were at most 10% faster but raced: in a fresh process, a batch whose shape was new to the
    process sometimes came out wrong (one row off by ~0.1 in about 1 of 11 first calls;
    docs/backends.md, Precision). ``shape_cache``: how many compiled shapes OpenVINO and its
    oneDNN keep (``None``: their defaults); static int8 graphs use
    :data:`STATIC_INT8_SHAPE_CACHE` (``$ONEDNN_PRIMITIVE_CACHE_CAPACITY``, when set before the
    first OpenVINO model of the process, is left as it is).

    Example:
        >>> backbone = OpenVinoBackbone(path, threads=2)  # doctest: +SKIP
        >>> backbone(ids, mask).shape  # doctest: +SKIP
        torch.Size([2, 7, 384])
    """

    name = "openvino"
    #: padded tokens per forward pass (the engine's default for it): with every thread on one
    #: inference, 1,024-token batches ran all-MiniLM-L6-v2 7% (float32) and 17% (static int8)
    #: faster than the CPU default of 512
    batch_tokens = 1024

    def __init__(self, path: Path, *, threads: int, shape_cache: int | None = None) -> None:
        ov = import_runtime("openvino")
        config = {"INFERENCE_PRECISION_HINT": "f32",
                  "INFERENCE_NUM_THREADS": str(threads),
                  "NUM_STREAMS": "1"}
        if shape_cache is not None:
            os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(shape_cache))
            config["CPU_RUNTIME_CACHE_CAPACITY"] = str(shape_cache)
        self._compiled = ov.Core().compile_model(str(path), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        # One inference now: OpenVINO's Python binding initialises its numpy bridge lazily, and
        # two threads doing that at once (two models used side by side) can deadlock on the GIL.
        ones = torch.ones((1, 2), dtype=torch.long)
        self(ones, ones)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                 first_token_only: bool = False) -> torch.Tensor:
        feeds = _feeds(input_ids, attention_mask)
        with self._lock:
            result = self._request.infer(feeds)
            return torch.from_numpy(np.array(result[0], copy=True))
