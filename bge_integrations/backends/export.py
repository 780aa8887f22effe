"""Export a loaded backbone to ONNX and prepare it for a runtime (fusions, int8, OpenVINO IR).

The graph has two inputs, ``input_ids`` and ``attention_mask`` (int64, dynamic batch and
sequence axes), and one output, ``last_hidden_state``: pooling and heads stay ours. torch's
``torch.export``-based exporter traces the model's mask logic symbolically, so padded rows come
out as in eager mode (the TorchScript tracer freezes transformers' mask branches to the
example's shape). At ONNX opset 23 it writes each layer's scaled-dot-product attention as one
ONNX ``Attention`` node: ONNX Runtime runs it as one kernel and OpenVINO reads it as its
``ScaledDotProductAttention`` (at opset 18 it was a dozen MatMul/Softmax/Where nodes that
neither runtime's fusions recognised).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from .base import BackendExportError
from .calibration import CalibrationSet, quantize_static

__all__ = ["export_onnx", "optimize_onnx", "quantize_onnx_int8", "to_openvino_ir",
           "resave_onnx", "ONNX_FILE", "OPENVINO_FILE", "OPSET"]

ONNX_FILE = "model.onnx"
OPENVINO_FILE = "model.xml"
#: ONNX opset of the export (23: attention as one ``Attention`` node)
OPSET = 23
#: the opset of models with rotary position embeddings (see :func:`export_onnx`)
ROTARY_OPSET = 18


class _LastHiddenState(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          return_dict=True).last_hidden_state


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress and warnings; a library call should not."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                               "onnxscript", "root")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=False):
            lg.setLevel(level)


def _fail(model_name: str, what: str, exc: BaseException) -> BackendExportError:
    msg = (f"Could not {what} {model_name!r} ({type(exc).__name__}: "
           f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}). "
           "Use backend='torch' for this model.")
    return BackendExportError(msg)


@contextlib.contextmanager
def _written_as(dst: Path) -> Iterator[Path]:
    """A fresh name next to ``dst`` to write an ONNX file with external data to; renamed to
    ``dst`` afterwards (its weights keep the fresh ``.data`` name the graph refers to).

    onnx 1.23 refuses to write external data whose *file name* exists in the process's
    working directory (``os.path.exists(location)`` on the bare name), so a user's
    ``model.onnx.data`` in the current directory would break every export with fixed names.
    """
    private = dst.with_name(f"graph-{uuid.uuid4().hex}.onnx")
    yield private
    os.replace(private, dst)


def export_onnx(model: torch.nn.Module, out_dir: Path, model_name: str) -> Path:
    """Export ``model``'s last hidden state to ``out_dir/model.onnx`` (float32, weights in
    ``model.onnx.data``), at :data:`OPSET`; at :data:`ROTARY_OPSET` for models with rotary
    position embeddings (ONNX Runtime's ``RotaryEmbedding``-23 kernel rejects the caches the
    exporter writes for them)."""
    model = model.float().eval()
    out = _export(model, out_dir, model_name, OPSET)
    if _has_op(out, "RotaryEmbedding"):
        out = _export(model, out_dir, model_name, ROTARY_OPSET)
    return out


def _export(model: torch.nn.Module, out_dir: Path, model_name: str, opset: int) -> Path:
    ids = torch.tensor([[1, 5, 6, 7, 8, 2], [1, 9, 2, 0, 0, 0]], dtype=torch.long)
    mask = (torch.arange(6)[None] < torch.tensor([[6], [3]])).long()
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    out = out_dir / ONNX_FILE
    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                _LastHiddenState(model), (ids, mask), dynamo=True, opset_version=opset,
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_shapes={"input_ids": {0: batch, 1: sequence},
                                "attention_mask": {0: batch, 1: sequence}},
                verbose=False)
            program.save(str(out), external_data=True)
    except Exception as exc:  # noqa: BLE001 - every exporter failure gets the same advice
        raise _fail(model_name, "export to ONNX", exc) from exc
    return out


def _has_op(path: Path, op_type: str) -> bool:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type == op_type for node in graph.node)


def optimize_onnx(src: Path, dst: Path, config: object, model_name: str) -> Path:
    """onnxruntime's transformer optimizer (LayerNorm/GELU/bias fusions) on ``src``.

    Only the fusions that keep float32 outputs equal run (``opt_level=1``; no float16, no
    approximate GELU).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_gelu_approximation = False
    try:
        with _quiet():
            optimized = optimize_model(
                str(src), model_type="bert",
                num_heads=int(getattr(config, "num_attention_heads", 0)),
                hidden_size=int(getattr(config, "hidden_size", 0)),
                optimization_options=options, opt_level=1)
            with _written_as(dst) as private:
                optimized.save_model_to_file(str(private), use_external_data_format=True,
                                             all_tensors_to_one_file=True)
    except Exception as exc:  # noqa: BLE001
        raise _fail(model_name, "optimise the ONNX graph of", exc) from exc
    return dst


def quantize_onnx_int8(src: Path, dst: Path, model_name: str) -> Path:
    """Dynamic int8: per-channel int8 weights, activations quantized per batch at run time
    (uint8), run by onnxruntime's VNNI / AMX kernels where the CPU has them."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with _quiet():
            with _written_as(dst) as private:
                quantize_dynamic(str(src), str(private), per_channel=True,
                                 weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                                 use_external_data_format=True)
    except Exception as exc:  # noqa: BLE001
        raise _fail(model_name, "quantize to int8", exc) from exc
    return dst


def to_openvino_ir(src: Path, out_dir: Path, model_name: str, *, int8: bool,
                   calibration: CalibrationSet | None = None) -> Path:
    """Convert the ONNX graph to OpenVINO IR (``model.xml`` + ``model.bin``); with ``int8``
    the MatMul weights are stored per-channel int8 (see :mod:`.openvino_int8`), or with a
    ``calibration`` set every product gets static int8 scales (see :mod:`.calibration`)."""
    import openvino as ov

    try:
        with _quiet():
            model = ov.convert_model(str(src))
            if calibration is not None:
                model = quantize_static(model, calibration)
            elif int8:
                from .openvino_int8 import compress_matmul_weights

                compress_matmul_weights(model)
            out = out_dir / OPENVINO_FILE
            ov.save_model(model, str(out), compress_to_fp16=False)
    except ImportError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _fail(model_name, "convert to OpenVINO", exc) from exc
    return out


def resave_onnx(src: Path, dst: Path) -> Path:
    """``src`` saved as ``dst``, with its weights in one external data file next to it."""
    import onnx

    model = onnx.load(str(src), load_external_data=True)
    with _written_as(dst) as private:
        onnx.save_model(model, str(private), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=private.name + ".data")
    return dst
