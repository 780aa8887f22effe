"""BGE-M3's two linear heads: read their files safely, check them, build them exactly.

A head file is checked before anything is built from it: its size against what a head of the
backbone's width can hold (a crafted file cannot make us allocate gigabytes), then its tensors'
names, shapes and dtypes, read with ``torch.load(weights_only=True, mmap=True)``. The layer is
then built with an explicit dtype and device, never from torch's process-wide default dtype
(which another thread, e.g. one inside a bfloat16 ``from_pretrained``, may have changed).

Example:
    >>> from bge_integrations.core.m3_heads import HEAD_FILES
    >>> HEAD_FILES["sparse"]
    'sparse_linear.pt'
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from .registry import Family, find_spec

__all__ = ["HEAD_FILES", "load_head", "missing_heads_message", "check_vocabulary", "is_m3_model"]

#: output name -> file holding its linear head next to the backbone weights
HEAD_FILES = {"colbert": "colbert_linear.pt", "sparse": "sparse_linear.pt"}
#: slack for the pickle and zip records around the tensors' bytes
_FILE_OVERHEAD = 1 << 20


def check_vocabulary(model_dir: str, tokenizer_size: int, model_vocab: object) -> None:
    """Sparse vectors are keyed by token id: every id the tokenizer can give must have a row
    in the backbone's embedding table (``config.json`` ``vocab_size``)."""
    if isinstance(model_vocab, int) and not isinstance(model_vocab, bool) and (
            tokenizer_size > model_vocab):
        msg = (f"{model_dir!r}: its tokenizer has {tokenizer_size} tokens but the backbone's "
               f"embedding table has {model_vocab} rows (config.json vocab_size); the "
               "tokenizer belongs to another model. Use the checkpoint's own tokenizer files.")
        raise ValueError(msg)


def missing_heads_message(model_dir: str, missing: list[str]) -> str:
    """Why a folder without (some of) BGE-M3's head files cannot give those outputs."""
    files = " and ".join(repr(HEAD_FILES[name]) for name in missing)
    if len(missing) == len(HEAD_FILES):
        return (f"{model_dir!r} is not a BGE-M3 checkpoint: it has no {files}, the sparse and "
                "ColBERT heads BGE-M3 ships next to its weights. Download the full model "
                "(BAAI/bge-m3), or, for this model's dense CLS vector alone, use "
                "BGEEmbedder(path, pooling='cls').")
    return (f"BGE-M3 {' and '.join(missing)} output needs {files} in {model_dir!r}, and it is "
            "missing. Download the full model (it ships colbert_linear.pt and "
            f"sparse_linear.pt) or request only the outputs you have ({missing[0]}=False).")


def _out_features(name: str, hidden: int) -> range:
    # sparse: one weight per token; colbert: FlagEmbedding's colbert_dim, at most the width
    return range(1, 2) if name == "sparse" else range(1, hidden + 1)


def _check_stored_size(path: str, hidden: int) -> bool:
    """Refuse a file whose tensors (uncompressed) exceed a float64 Linear(hidden, hidden).

    Returns whether the file can be memory-mapped: a zip archive with every record stored
    uncompressed (``torch.save``'s own layout). A compressed record mapped as is would read
    compressed bytes as numbers.
    """
    limit = 8 * (hidden * hidden + hidden) + _FILE_OVERHEAD
    mappable = zipfile.is_zipfile(path)
    if mappable:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
        size = sum(info.file_size for info in infos)
        mappable = all(info.compress_type == zipfile.ZIP_STORED for info in infos)
    else:
        size = os.path.getsize(path)
    if size > limit:
        msg = (f"{path!r} holds {size} bytes of data, more than a head of this model's width "
               f"({hidden}) needs ({limit} at most); it was not loaded. Replace it with the "
               "file from the model's official repository.")
        raise ValueError(msg)
    return mappable


def _read_state(path: str, mappable: bool) -> object:
    # tensors are mapped, not read: their shapes are checked before any memory is used
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mappable)


def _checked_tensors(path: str, name: str, state: object, hidden: int
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    keys = set(state) if isinstance(state, Mapping) else set()
    weight = state.get("weight") if isinstance(state, Mapping) else None
    bias = state.get("bias") if isinstance(state, Mapping) else None
    outs = _out_features(name, hidden)
    want = f"Linear({hidden}, {outs.stop - 1 if len(outs) == 1 else f'<= {hidden}'})"
    ok = (keys <= {"weight", "bias"} and isinstance(weight, torch.Tensor)
          and weight.is_floating_point() and weight.ndim == 2
          and weight.shape[1] == hidden and weight.shape[0] in outs
          and (bias is None or (isinstance(bias, torch.Tensor) and bias.is_floating_point()
                                and tuple(bias.shape) == (weight.shape[0],))))
    if not ok:
        shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                  for k, v in (state.items() if isinstance(state, Mapping) else [])}
        msg = (f"{path!r} does not hold a {want} state dict for this backbone (hidden size "
               f"{hidden}); it holds {shapes or type(state).__name__}. Replace it with the file "
               "from the model's official repository.")
        raise ValueError(msg)
    return weight, bias


def load_head(model_dir: str, name: str, hidden: int, device: torch.device,
              dtype: torch.dtype) -> torch.nn.Linear:
    """The ``name`` head (``"sparse"`` or ``"colbert"``) of the checkpoint in ``model_dir``.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is unreadable as a plain tensor state dict, too large, or not a
            linear layer over the backbone's ``hidden`` size.
    """
    path = os.path.join(model_dir, HEAD_FILES[name])
    if not os.path.isfile(path):
        raise FileNotFoundError(missing_heads_message(model_dir, [name]))
    mappable = _check_stored_size(path, hidden)
    try:
        state = _read_state(path, mappable)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear error
        msg = (f"{path!r} is not a plain tensor state dict (it may hold executable pickle data "
               "or be damaged); it was not loaded. Replace it with the file from the model's "
               f"official repository. ({type(exc).__name__})")
        raise ValueError(msg) from None
    weight, bias = _checked_tensors(path, name, state, hidden)
    layer = torch.nn.Linear(hidden, weight.shape[0], bias=bias is not None, device="meta",
                            dtype=dtype)
    tensors = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    layer.load_state_dict({k: v.to(device=device, dtype=dtype, copy=True)
                           for k, v in tensors.items()}, assign=True)
    return layer.requires_grad_(False).eval()


def is_m3_model(model: str) -> bool:
    """Whether ``model`` is BGE-M3-like: registry family ``m3``, or a directory with its heads."""
    spec = find_spec(model)
    if spec is not None:
        return spec.family is Family.M3
    path = Path(model).expanduser()
    return path.is_dir() and all((path / name).is_file() for name in HEAD_FILES.values())
