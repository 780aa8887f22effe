"""How a backbone runs: PyTorch eager, ONNX Runtime or OpenVINO, behind one small interface.

A :class:`~.base.Backbone` turns padded ``input_ids`` and ``attention_mask`` into the last
hidden state. Everything around it (tokenizing, batching, pooling, BGE-M3's sparse and ColBERT
heads, scores) stays in :mod:`bge_integrations.core` and is the same for every backend: the
engine's one loop calls the backbone and hands its output to the head.
"""

from __future__ import annotations

from .base import BACKENDS, Backbone, BackendExportError, check_backend

__all__ = ["BACKENDS", "Backbone", "BackendExportError", "check_backend"]
