"""Load a tokenizer and backbone once per (model, device, dtype) and share it.

Every embedder asks :func:`load_model`; two embedders on the same model get the same
:class:`LoadedModel`, so the weights are in memory once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers
from packaging.version import Version

from .hardware import resolve_device, resolve_dtype
from .lean_encoder import LeanEncoder, lean_encoder
from .resolve import resolve_model_dir

__all__ = ["LoadedModel", "load_model", "clear_model_cache", "quantize_int8", "TORCH_DTYPES"]

#: compute dtype name -> torch dtype of the weights (int8 keeps float32 outside quantized Linear)
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16,
                 "bfloat16": torch.bfloat16, "int8": torch.float32}
_DTYPE_KWARG = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
@dataclass
class LoadedModel:
    """A tokenizer and backbone loaded once and shared by every embedder that uses them."""

    name: str
    path: str
    tokenizer: Any
    model: torch.nn.Module
    device: torch.device
    dtype: str
    tokenizer_lock: threading.Lock = field(default_factory=threading.Lock)
    extras: dict[str, Any] = field(default_factory=dict)
    extras_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def lean(self) -> LeanEncoder | None:
        """The model's lean forward pass (:mod:`.lean_encoder`), if its layout allows one."""
        return self.extra("lean_encoder", lambda: lean_encoder(self.model))

    def extra(self, key: str, build: Callable[[], Any]) -> Any:
        """Load-once storage for parts tied to this model (e.g. BGE-M3 heads)."""
        with self.extras_lock:
            if key not in self.extras:
                self.extras[key] = build()
            return self.extras[key]


_CACHE: dict[tuple[str, str, str, bool, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def clear_model_cache() -> None:
    """Forget every cached model (their memory is freed once no embedder holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def load_model(name_or_path: str, *, device: str | torch.device | None = "auto",
               dtype: str | torch.dtype | None = "auto",
               trust_remote_code: bool = False, model_class: Any = None) -> LoadedModel:
    """Load (or reuse) tokenizer + backbone for ``(model, device, dtype)``.

    ``model_class``: what loads the weights (anything with ``from_pretrained``, e.g.
    ``AutoModelForSequenceClassification`` or a native reranker module); default ``AutoModel``.
    """
    resolved_device = resolve_device(device)
    dtype_name = resolve_dtype(dtype, resolved_device)
    path = resolve_model_dir(name_or_path)
    key = (path, str(resolved_device), dtype_name, bool(trust_remote_code),
           getattr(model_class, "__qualname__", "AutoModel"))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        loaded = _load_uncached(name_or_path, path, resolved_device, dtype_name,
                                trust_remote_code, model_class)
        _CACHE[key] = loaded
        return loaded


def _load_uncached(name: str, path: str, device: torch.device, dtype_name: str,
                   trust_remote_code: bool, model_class: Any = None) -> LoadedModel:
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = (model_class or AutoModel).from_pretrained(
            path, trust_remote_code=trust_remote_code,
            **{_DTYPE_KWARG: TORCH_DTYPES[dtype_name]},
        )
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            msg = (f"Model {name!r} ships custom code; pass trust_remote_code=True if you "
                   "trust its source.")
            raise ValueError(msg) from exc
        raise
    except OSError as exc:
        msg = f"Could not load model {name!r} from {path!r}: {exc}"
        raise OSError(msg) from exc
    model.config.use_cache = False
    model.eval()
    if dtype_name == "int8":
        model = quantize_int8(model)
    model.to(device)
    return LoadedModel(name=name, path=path, tokenizer=tokenizer, model=model, device=device,
                       dtype=dtype_name)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of every ``nn.Linear`` (CPU), weights quantized per channel.

    Per-channel weight scales keep quality: on STS-B dev, all-MiniLM-L6-v2 loses 0.10 Spearman
    points (x100) against float32, where per-tensor scales lose 0.45-0.51 (benchmarks/README.md).
    Activations are quantized per batch at run time, so int8 outputs depend slightly on which
    texts share a batch; float32 outputs do not.
    """
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8)
