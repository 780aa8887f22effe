"""What the native reranker modules share: config and weight loading, RoPE, masks, last token.

Weights load from ``*.safetensors`` (sharded or not) or, failing that, ``pytorch_model*.bin``
with ``torch.load(weights_only=True)``; a missing or unexpected weight is an error, never a
silent random init.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import torch
from torch import nn
from transformers.activations import ACT2FN

__all__ = ["NativeModel", "rotary", "apply_rotary", "additive_causal_mask", "last_positions",
           "repeat_kv", "AttentionProjections", "GatedMLP"]

M = TypeVar("M", bound="NativeModel")


class NativeModel(nn.Module):
    """An ``nn.Module`` built from a checkpoint directory's ``config.json`` and weights.

    Subclasses set ``ARCHITECTURES`` (the ``architectures`` entries they read) and build their
    modules with the checkpoint's parameter names, so its state dict loads as it is.
    """

    ARCHITECTURES: tuple[str, ...] = ()

    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def from_pretrained(cls: type[M], path: str | Path, *, trust_remote_code: bool = False,
                        dtype: torch.dtype | None = None, torch_dtype: torch.dtype | None = None,
                        **_: Any) -> M:
        """Build the module from ``path/config.json`` and load its weights (float32 default)."""
        del trust_remote_code  # never needed: this is our code, not the checkpoint's
        root = Path(path)
        raw = json.loads((root / "config.json").read_text(encoding="utf-8"))
        archs = raw.get("architectures") or []
        if cls.ARCHITECTURES and not set(archs) & set(cls.ARCHITECTURES):
            msg = (f"{root} holds {archs or 'an unknown architecture'}, not "
                   f"{' / '.join(cls.ARCHITECTURES)}; pick the reranker kind that matches it.")
            raise ValueError(msg)
        model = cls(SimpleNamespace(**raw))
        state = load_weights(root)
        missing, unexpected = _compare(model.state_dict(), state)
        if missing or unexpected:
            msg = (f"Weights of {root} do not match {cls.__name__}: missing "
                   f"{missing[:5]}, unexpected {unexpected[:5]}.")
            raise ValueError(msg)
        model.load_state_dict(state, strict=True)
        model.to(dtype or torch_dtype or torch.float32)
        return model.eval()


def _compare(own: dict[str, torch.Tensor], given: dict[str, torch.Tensor]
             ) -> tuple[list[str], list[str]]:
    return sorted(set(own) - set(given)), sorted(set(given) - set(own))


def load_weights(root: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint in ``root`` (safetensors first, then ``.bin``)."""
    files = sorted(root.glob("*.safetensors"))
    state: dict[str, torch.Tensor] = {}
    if files:
        from safetensors.torch import load_file

        for file in files:
            state.update(load_file(str(file)))
        return state
    bins = sorted(root.glob("pytorch_model*.bin"))
    if not bins:
        msg = f"No *.safetensors or pytorch_model*.bin weights in {root}."
        raise OSError(msg)
    for file in bins:
        state.update(torch.load(file, map_location="cpu", weights_only=True))
    return state


def rotary(head_dim: int, base: float, positions: torch.Tensor, *, scaling: float = 1.0
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of rotary embeddings at ``positions`` (float32, ``(..., seq, head_dim)``)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64)
                                .to(device=positions.device, dtype=torch.float32) / head_dim))
    t = positions.to(torch.float32) / scaling
    freqs = t[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 *, in_float32: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys (``(batch, heads, seq, dim)``); MiniCPM rotates in float32."""
    cos, sin = cos[:, None], sin[:, None]
    if in_float32:
        qf, kf = q.float(), k.float()
        return ((qf * cos + _rotate_half(qf) * sin).to(q.dtype),
                (kf * cos + _rotate_half(kf) * sin).to(k.dtype))
    cos, sin = cos.to(q.dtype), sin.to(q.dtype)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def additive_causal_mask(attention_mask: torch.Tensor, dtype: torch.dtype,
                         sliding_window: int | None = None) -> torch.Tensor:
    """``(batch, 1, seq, seq)`` mask: 0 where a token may attend, the dtype's minimum elsewhere
    (future tokens, padding, and keys ``sliding_window`` or more positions back)."""
    seq = attention_mask.shape[1]
    idx = torch.arange(seq, device=attention_mask.device)
    allowed = idx[None, :] <= idx[:, None]
    if sliding_window is not None:
        allowed = allowed & (idx[:, None] - idx[None, :] < sliding_window)
    allowed = allowed[None, None] & attention_mask[:, None, None, :].bool()
    mask = torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def last_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, left or right padded."""
    seq = attention_mask.shape[1]
    idx = torch.arange(seq, device=attention_mask.device)
    return torch.where(attention_mask.bool(), idx, -1).max(dim=1).values


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Grouped-query attention: repeat each key/value head ``groups`` times."""
    if groups == 1:
        return x
    batch, heads, seq, dim = x.shape
    return x[:, :, None].expand(batch, heads, groups, seq, dim).reshape(
        batch, heads * groups, seq, dim)


class AttentionProjections(nn.Module):
    """The ``q_proj``/``k_proj``/``v_proj``/``o_proj`` of grouped-query attention (the
    checkpoints' names) and the reshapes around the attention a subclass computes.

    ``num_key_value_heads`` key/value heads (default: one per query head) are shared by
    groups of ``num_attention_heads`` query heads of ``head_dim`` each.
    """

    def __init__(self, c: SimpleNamespace, head_dim: int) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        self.head_dim = head_dim
        bias = bool(getattr(c, "attention_bias", False))
        self.q_proj = nn.Linear(c.hidden_size, self.heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(c.hidden_size, self.kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(c.hidden_size, self.kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(self.heads * head_dim, c.hidden_size, bias=bias)

    @property
    def groups(self) -> int:
        """Query heads per key/value head."""
        return self.heads // self.kv_heads

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(batch, seq, hidden)`` -> q, k, v as ``(batch, heads, seq, head_dim)``."""
        b, s, _ = x.shape
        return (self.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2),
                self.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2),
                self.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2))

    def merge(self, out: torch.Tensor) -> torch.Tensor:
        """``(batch, heads, seq, head_dim)`` attention output -> ``o_proj`` of the heads."""
        b, _, s, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))


class GatedMLP(nn.Module):
    """``down_proj(act(gate_proj(x)) * up_proj(x))``, the Llama-family feed-forward."""

    def __init__(self, c: SimpleNamespace, activation: str) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)
        self.act = ACT2FN[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
