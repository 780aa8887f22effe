"""Per-channel int8 weights for OpenVINO's MatMuls, in the pattern its CPU plugin runs as int8.

Each float32 MatMul weight becomes ``Constant(int8) -> Convert(f32) -> Multiply(scale)`` with
one symmetric scale per output channel. The CPU plugin fuses that into a FullyConnected with
compressed weights and quantizes the activations per group of 32 at run time (dynamic
quantization), using VNNI / AMX where the CPU has them. No calibration data is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["compress_matmul_weights"]


def compress_matmul_weights(model: Any) -> int:
    """Rewrite ``model`` (an ``openvino.Model``) in place; returns the number of weights."""
    from openvino import opset13 as ops

    count = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        source = op.input_value(1).get_node()
        if source.get_type_name() != "Constant":
            continue
        weight = source.get_data()
        if weight.ndim != 2 or weight.dtype != np.float32:
            continue
        reduce_axis = 1 if op.get_attributes().get("transpose_b", False) else 0
        scale = np.abs(weight).max(axis=reduce_axis, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        quantized = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
        dequantized = ops.multiply(ops.convert(ops.constant(quantized), np.float32),
                                   ops.constant(scale.astype(np.float32)))
        op.input(1).replace_source_output(dequantized.output(0))
        count += 1
    return count
