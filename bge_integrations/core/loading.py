"""Load a tokenizer and backbone once per (model, device, dtype) and share it.

Every embedder asks :func:`load_model`; two embedders on the same model get the same
:class:`LoadedModel`, so the weights are in memory once.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers
from packaging.version import Version

from ..backends.base import RUNTIME_BACKENDS, Backbone, check_backend
from ..backends.calibration import calibration_key, calibration_set, check_calibration
from ..backends.torch_backbone import TorchBackbone
from .hardware import resolve_device, resolve_dtype
from .lean_encoder import LeanEncoder
from .resolve import resolve_model_dir

__all__ = ["ModelHandle", "LoadedModel", "load_model", "clear_model_cache", "quantize_int8",
           "TORCH_DTYPES", "IncompleteCheckpointError", "check_loading_info",
           "quiet_transformers", "forget_model", "runtime_device"]

#: compute dtype name -> torch dtype of the weights (int8 keeps float32 outside quantized Linear)
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16,
                 "bfloat16": torch.bfloat16, "int8": torch.float32}
_DTYPE_KWARG = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
#: checkpoint keys whose absence changes nothing we compute: the pooler (never read: pooling is
#: ours) and buffers that the model rebuilds itself (position ids, rotary frequencies)
_IGNORABLE_KEYS = re.compile(r"(^|\.)(pooler\.|position_ids$|rotary_emb\.inv_freq$)")


class IncompleteCheckpointError(ValueError):
    """The checkpoint lacks backbone weights (they would be random) or holds unknown ones."""


@dataclass
class LoadedModel:
    """A tokenizer and backbone loaded once and shared by every embedder that uses them.

    ``backbone`` runs the model (:mod:`bge_integrations.backends`); with the torch backend it
    wraps ``model``, the runtime backends (ONNX Runtime, OpenVINO) keep no torch weights and
    ``model`` is None.
    """

    name: str
    path: str
    tokenizer: Any
    model: torch.nn.Module | None
    device: torch.device
    dtype: str
    backbone: Backbone | None = None
    config: Any = None
    #: a task model's head (a reranker's classifier) when a runtime backend runs the backbone
    head: torch.nn.Module | None = None
    tokenizer_lock: threading.Lock = field(default_factory=threading.Lock)
    extras: dict[str, Any] = field(default_factory=dict)
    extras_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.backbone is None:
            if self.model is None:
                msg = "LoadedModel needs a model or a backbone."
                raise ValueError(msg)
            self.backbone = TorchBackbone(getattr(self.model, "base_model", self.model))
        if self.config is None and self.model is not None:
            self.config = getattr(self.model, "config", None)

    @property
    def backend(self) -> str:
        """Name of the backend that runs the backbone (``"torch"``, ``"onnx"``, ...)."""
        return self.backbone.name

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def lean(self) -> LeanEncoder | None:
        """The model's lean forward pass (:mod:`.lean_encoder`), if its layout allows one."""
        return getattr(self.backbone, "lean", None)

    def extra(self, key: str, build: Callable[[], Any]) -> Any:
        """Load-once storage for parts tied to this model (e.g. BGE-M3 heads)."""
        with self.extras_lock:
            if key not in self.extras:
                self.extras[key] = build()
            return self.extras[key]


_CACHE: dict[tuple[str, str, str, bool, str, str, str | None], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def clear_model_cache() -> None:
    """Forget every cached model (their memory is freed once no embedder holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def forget_model(loaded: LoadedModel) -> None:
    """Drop ``loaded`` from the model cache (it is freed once nothing else holds it)."""
    with _CACHE_LOCK:
        for key in [k for k, v in _CACHE.items() if v is loaded]:
            del _CACHE[key]


def load_model(name_or_path: str, *, device: str | torch.device | None = "auto",
               dtype: str | torch.dtype | None = "auto",
               trust_remote_code: bool = False, show_progress: bool = False,
               backend: str = "torch", model_class: Any = None,
               int8_calibration: Sequence[str] | None = None) -> LoadedModel:
    """Load (or reuse) tokenizer + backbone for ``(model, device, dtype, backend)``.

    ``model_class``: what loads the weights (anything with ``from_pretrained``, e.g.
    ``AutoModelForSequenceClassification`` or a native reranker module); default ``AutoModel``.

    transformers' and the hub's own progress bars and load reports stay quiet: a download
    shows its bars only with ``show_progress=True``; a checkpoint with missing or unknown
    backbone weights raises :class:`IncompleteCheckpointError` instead of loading random ones.
    ``backend`` is ``"torch"``, ``"onnx"``, ``"openvino"`` or ``"auto"``
    (:func:`bge_integrations.backends.auto.choose_backend`). ``int8_calibration`` (texts;
    OpenVINO int8 only) makes the int8 scales static (:mod:`bge_integrations.backends.calibration`).
    """
    backend = check_backend(backend)
    if int8_calibration is not None and backend != "openvino":
        check_calibration(int8_calibration, backend, str(dtype))  # raises: not OpenVINO
    if backend == "auto":
        from ..backends.auto import choose_backend

        return choose_backend(name_or_path, device=device, dtype=dtype,
                              trust_remote_code=trust_remote_code, show_progress=show_progress,
                              model_class=model_class)
    if backend in RUNTIME_BACKENDS:
        resolved_device = runtime_device(device, backend)
        dtype_name = "float32" if dtype in (None, "auto") else resolve_dtype(dtype,
                                                                            resolved_device)
    else:
        resolved_device = resolve_device(device)
        dtype_name = resolve_dtype(dtype, resolved_device)
    calibration = check_calibration(int8_calibration, backend, dtype_name)
    with quiet_transformers(hub_bars=show_progress):
        path = resolve_model_dir(name_or_path)
    key = (path, str(resolved_device), dtype_name, bool(trust_remote_code), backend,
           getattr(model_class, "__qualname__", "AutoModel"),
           None if calibration is None else calibration_key(calibration))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        with quiet_transformers():
            loaded = _load_uncached(name_or_path, path, resolved_device, dtype_name,
                                    trust_remote_code, backend, model_class, calibration)
        _CACHE[key] = loaded
        return loaded


def runtime_device(device: str | torch.device | None, backend: str) -> torch.device:
    """The CPU, for the runtime backends (``device`` must be ``"auto"`` or a CPU)."""
    if device in (None, "auto") or str(device) == "cpu":
        return torch.device("cpu")
    msg = (f"backend={backend!r} runs on the CPU; got device={str(device)!r}. Use device='cpu' "
           "(or 'auto'), or backend='torch' for GPUs.")
    raise ValueError(msg)


def _from_pretrained(name: str, path: str, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            msg = (f"Model {name!r} ships custom code; pass trust_remote_code=True if you "
                   "trust its source.")
            raise ValueError(msg) from exc
        raise
    except OSError as exc:
        msg = f"Could not load model {name!r} from {path!r}: {exc}"
        raise OSError(msg) from exc


def _load_backbone(name: str, path: str, dtype_name: str, trust_remote_code: bool,
                   model_class: Any = None) -> torch.nn.Module:
    """The checked model in eval mode (weights dtype of ``dtype_name``; int8 quantized)."""
    from transformers import AutoModel

    loaded = _from_pretrained(name, path, lambda: (model_class or AutoModel).from_pretrained(
        path, trust_remote_code=trust_remote_code, output_loading_info=True,
        **{_DTYPE_KWARG: TORCH_DTYPES[dtype_name]}))
    if isinstance(loaded, tuple):
        model, info = loaded
        check_loading_info(model, info, path)
    else:  # native modules check their own weights strictly
        model = loaded
    if hasattr(model, "config"):
        model.config.use_cache = False
    model.eval()
    if dtype_name == "int8":
        model = quantize_int8(model)
    return model


#: task heads a runtime backend can feed: model class -> attribute holding the head, which
#: reads the backbone's last hidden state (RoBERTa-family classifiers read its first token)
RUNTIME_HEADS = {"XLMRobertaForSequenceClassification": "classifier",
                 "RobertaForSequenceClassification": "classifier"}


def _load_uncached(name: str, path: str, device: torch.device, dtype_name: str,
                   trust_remote_code: bool, backend: str, model_class: Any = None,
                   calibration: tuple[str, ...] | None = None) -> LoadedModel:
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = _from_pretrained(name, path, lambda: AutoTokenizer.from_pretrained(
        path, trust_remote_code=trust_remote_code))
    if backend == "torch":
        model = _load_backbone(name, path, dtype_name, trust_remote_code, model_class)
        return LoadedModel(name=name, path=path, tokenizer=tokenizer, model=model.to(device),
                           device=device, dtype=dtype_name)
    from ..backends.base import BackendExportError
    from ..backends.build import build_runtime_backbone

    head = None
    if model_class is None:
        config = _from_pretrained(name, path, lambda: AutoConfig.from_pretrained(
            path, trust_remote_code=trust_remote_code))

        def float_backbone() -> torch.nn.Module:
            return _load_backbone(name, path, "float32", trust_remote_code)
    else:  # a task model: the runtime runs its backbone, its head stays in torch
        full = _load_backbone(name, path, "float32", trust_remote_code, model_class)
        attribute = RUNTIME_HEADS.get(type(full).__name__)
        if attribute is None:
            msg = (f"backend={backend!r} runs the backbone of {', '.join(RUNTIME_HEADS)} "
                   f"models; {name!r} is a {type(full).__name__}. Use backend='torch'.")
            raise BackendExportError(msg)
        config, head = full.config, getattr(full, attribute)
        base = full.base_model

        def float_backbone() -> torch.nn.Module:
            return base

    backbone = build_runtime_backbone(
        backend, dtype_name, name, path, config, float_backbone,
        calibration=None if calibration is None else calibration_set(calibration, tokenizer))
    return LoadedModel(name=name, path=path, tokenizer=tokenizer, model=None, device=device,
                       dtype=dtype_name, backbone=backbone, config=config, head=head)


_QUIET_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet_transformers(*, hub_bars: bool = False) -> Iterator[None]:
    """Silence transformers' progress bars ("Loading weights") and its warnings/load reports,
    and (unless ``hub_bars``) the hub's download bars, restoring the previous settings after.

    These switches are process-wide in both libraries; a lock keeps nested or concurrent loads
    from restoring them out of order.
    """
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from transformers.utils import logging as hf_logging

    with _QUIET_LOCK:
        bars_on = hf_logging.is_progress_bar_enabled()
        hub_on = not are_progress_bars_disabled()
        verbosity = hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()  # also turns the hub's bars off
        if hub_bars and hub_on:
            enable_progress_bars()
        hf_logging.set_verbosity_error()
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars_on:
                hf_logging.enable_progress_bar()
            if hub_on:
                enable_progress_bars()
            else:
                disable_progress_bars()


def check_loading_info(model: torch.nn.Module, info: dict[str, Any], path: str) -> None:
    """Raise :class:`IncompleteCheckpointError` when backbone weights are missing or unknown.

    transformers fills missing weights with random values and only logs it; an embedder with
    a random layer gives a different vector on every load, so it is an error here. Ignored:
    the pooler and rebuilt buffers (:data:`_IGNORABLE_KEYS`) and unexpected keys outside the
    backbone's modules (e.g. a masked-LM head the checkpoint was trained with).
    """
    base = getattr(model, "base_model", model)
    backbone = {name for m in (model, base) for name, _ in m.named_children()} - {"pooler"}
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    missing = sorted(k for k in info.get("missing_keys", ()) if not _IGNORABLE_KEYS.search(k))
    unexpected = sorted(
        k for k in info.get("unexpected_keys", ())
        if not _IGNORABLE_KEYS.search(k)
        and {k.split(".", 1)[0], k.removeprefix(prefix).split(".", 1)[0]} & backbone)
    if not (missing or unexpected):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} backbone weights are missing (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} weights do not fit the model (e.g. {unexpected[:3]})")
    msg = (f"The checkpoint in {path!r} is incomplete or does not match its config.json: "
           f"{'; '.join(parts)}. Loading it would fill those weights with random values. "
           "Re-download the model, or check that config.json and the weights belong together.")
    raise IncompleteCheckpointError(msg)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of every ``nn.Linear`` (CPU), weights quantized per channel;
    ``model`` itself is converted (its float32 Linear weights are freed as they go).

    Per-channel weight scales keep quality: on STS-B dev, all-MiniLM-L6-v2 loses 0.10 Spearman
    points (x100) against float32, where per-tensor scales lose 0.45-0.51 (benchmarks/README.md).
    Activations are quantized per batch at run time, so int8 outputs depend slightly on which
    texts share a batch; float32 outputs do not.

    transformers maps a safetensors checkpoint into memory and the loaded weights stay views
    of that map; one view left alive keeps every float32 weight's pages resident. So every
    tensor quantization does not replace is first copied out of the map, and the loader's
    reference cycles are collected after it: the map is then released (the bge-base shape's
    int8 peak RSS fell from 1,456 to 1,134 MiB in docs/performance.md's runs).
    """
    import gc
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    _copy_tensors_kept_by_quantization(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        # in place: a copy would hold the float32 model twice at peak (the caller's is fresh)
        model = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                 dtype=torch.qint8, inplace=True)
    gc.collect()
    return model


def _copy_tensors_kept_by_quantization(model: torch.nn.Module) -> None:
    """Give every parameter and buffer of ``model`` its own memory, except the weights of the
    ``nn.Linear`` layers that int8 quantization replaces (tied tensors stay tied)."""
    copies: dict[int, torch.Tensor] = {}
    for module in model.modules():
        quantized = type(module) is torch.nn.Linear  # quantize_dynamic's exact-type match
        for store in (module._parameters, module._buffers):
            for name, tensor in list(store.items()):
                if tensor is None or (quantized and name == "weight"):
                    continue
                if id(tensor) not in copies:
                    data = tensor.detach().clone()
                    copies[id(tensor)] = (
                        torch.nn.Parameter(data, requires_grad=tensor.requires_grad)
                        if isinstance(tensor, torch.nn.Parameter) else data)
                store[name] = copies[id(tensor)]


class ModelHandle:
    """What every model-holding class exposes of its :class:`LoadedModel` (``self._loaded``):
    device, compute dtype and tokenizer."""

    _loaded: LoadedModel

    @property
    def device(self) -> torch.device:
        """The device the model runs on."""
        return self._loaded.device

    @property
    def dtype(self) -> str:
        """The compute dtype (``"float32"``, ``"float16"``, ``"bfloat16"`` or ``"int8"``)."""
        return self._loaded.dtype

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer."""
        return self._loaded.tokenizer
