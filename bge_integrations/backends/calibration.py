"""Static int8 on OpenVINO: activation scales fixed from texts the user passes (NNCF).

``dtype="int8"`` alone quantizes the weights and measures each batch's activations at run time
(:mod:`.openvino_int8`). With ``int8_calibration=texts``, NNCF's post-training quantization
runs the float32 graph on those texts once, fixes a scale for every activation that feeds a
matrix product (attention's included) and stores them in the graph, so inference runs whole
int8 products with no quantization step at run time (VNNI / AMX where the CPU has them).
NNCF's transformer recipe keeps LayerNorm, softmax and GELU in float32, smooths outlier
channels (SmoothQuant) and corrects biases; the ``PERFORMANCE`` preset makes weights and
activations symmetric (on all-MiniLM-L6-v2 8% faster than ``MIXED``'s asymmetric activations,
at the same STS-B score). Pass texts like the ones you will embed; a few
hundred are plenty (each is cut at :data:`CALIBRATION_MAX_LENGTH` tokens).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.inputs import validate_texts

__all__ = ["CalibrationSet", "calibration_key", "check_calibration", "calibration_set",
           "quantize_static", "CALIBRATION_MAX_LENGTH"]

#: calibration texts are cut at this many tokens (or the model's own limit, if lower)
CALIBRATION_MAX_LENGTH = 512
#: calibration texts per forward pass
_TEXTS_PER_BATCH = 8
_NAME = "int8_calibration"


@dataclass(frozen=True)
class CalibrationSet:
    """Tokenized calibration batches (the graph's feeds) and the key of the texts."""

    key: str
    feeds: list[dict[str, np.ndarray]]


def check_calibration(texts: object, backend: str, dtype: str) -> tuple[str, ...] | None:
    """The calibration texts as a tuple (``None`` stays ``None``), or a clear error for bad
    texts or for a backend / dtype that does not run static int8."""
    if texts is None:
        return None
    checked = validate_texts(texts, name=_NAME)
    if not checked or not any(text.strip() for text in checked):
        msg = f"{_NAME} needs at least one non-empty text (a few hundred work best)."
        raise ValueError(msg)
    if backend != "openvino" or dtype != "int8":
        msg = (f"{_NAME} sets static int8 scales on backend='openvino' with dtype='int8'; got "
               f"backend={backend!r}, dtype={dtype!r}. Drop {_NAME} for dynamic int8 "
               "(every backend), or pass backend='openvino', dtype='int8'.")
        raise ValueError(msg)
    return tuple(checked)


def calibration_key(texts: tuple[str, ...]) -> str:
    """A hash of the calibration texts and the settings that turn them into scales."""
    text = json.dumps({"texts": texts, "max_length": CALIBRATION_MAX_LENGTH,
                       "per_batch": _TEXTS_PER_BATCH}, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def calibration_set(texts: tuple[str, ...], tokenizer: Any) -> CalibrationSet:
    """``texts`` tokenized into length-sorted padded batches (empty texts left out)."""
    limit = CALIBRATION_MAX_LENGTH
    model_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_limit, int) and 0 < model_limit < limit:
        limit = model_limit
    kept = sorted((t for t in texts if t.strip()), key=len)
    feeds = []
    for start in range(0, len(kept), _TEXTS_PER_BATCH):
        batch = tokenizer(kept[start:start + _TEXTS_PER_BATCH], truncation=True,
                          max_length=limit, padding=True, return_tensors="np")
        feeds.append({"input_ids": batch["input_ids"].astype(np.int64),
                      "attention_mask": batch["attention_mask"].astype(np.int64)})
    return CalibrationSet(calibration_key(texts), feeds)


def quantize_static(model: Any, calibration: CalibrationSet) -> Any:
    """``model`` (an ``openvino.Model``, float32) with static int8 products, via NNCF."""
    try:
        import nncf
    except ImportError as exc:
        msg = (f"{_NAME} needs nncf, which is not installed: pip install "
               "'bge-integrations[openvino]' (or drop int8_calibration for dynamic int8).")
        raise ImportError(msg) from exc
    nncf.set_log_level(logging.ERROR)
    return nncf.quantize(model, nncf.Dataset(calibration.feeds),
                         model_type=nncf.ModelType.TRANSFORMER,
                         preset=nncf.QuantizationPreset.PERFORMANCE,
                         subset_size=len(calibration.feeds))
