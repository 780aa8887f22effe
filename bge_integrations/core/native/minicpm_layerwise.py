"""BAAI/bge-reranker-v2-minicpm-layerwise, natively: MiniCPM with one score head per layer.

The checkpoint's own code (``LayerWiseMiniCPMForCausalLM``) calls a transformers Cache method
that no longer exists. This module reads the same ``config.json`` keys and weight names and
computes what FlagEmbedding 1.4.2's ``LayerWiseFlagLLMReranker`` does with ``use_cache=False``:

- embeddings times ``scale_emb``; each decoder layer adds its attention and MLP outputs scaled
  by ``scale_depth / sqrt(num_hidden_layers)``; RMSNorm with float32 statistics; RoPE (none,
  ``linear`` or ``dynamic`` scaling) rotated in float32; positions ``0..seq-1``;
- the score at cutoff layer ``c`` is ``lm_head[c - start_layer].linear_head(norm(h_c))`` at the
  last real token, ``h_c`` the hidden state after ``c`` layers (``head_type="simple"``).
  Layers past the largest cutoff are not run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from .common import (
    AttentionProjections,
    GatedMLP,
    NativeModel,
    additive_causal_mask,
    apply_rotary,
    last_positions,
    repeat_kv,
    rotary,
)

__all__ = ["LayerwiseMiniCPMReranker"]


class _RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.to(torch.float32).pow(2).mean(dim=-1, keepdim=True)
        return (x * torch.rsqrt(variance + self.eps)).to(x.dtype) * self.weight


class _Attention(AttentionProjections):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__(c, c.hidden_size // c.num_attention_heads)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        q, k, v = self.split(x)
        q, k = apply_rotary(q, k, *rope, in_float32=True)
        return self.merge(F.scaled_dot_product_attention(
            q, repeat_kv(k, self.groups), repeat_kv(v, self.groups), attn_mask=mask))


class _Layer(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        eps = getattr(c, "rms_norm_eps", 1e-6)
        self.self_attn = _Attention(c)
        self.mlp = GatedMLP(c, getattr(c, "hidden_act", "silu"))
        self.input_layernorm = _RMSNorm(c.hidden_size, eps)
        self.post_attention_layernorm = _RMSNorm(c.hidden_size, eps)
        self.scale = getattr(c, "scale_depth", 1) / math.sqrt(c.num_hidden_layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), mask, rope) * self.scale
        return x + self.mlp(self.post_attention_layernorm(x)) * self.scale


class _Backbone(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))
        self.norm = _RMSNorm(c.hidden_size, getattr(c, "rms_norm_eps", 1e-6))


class _Head(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.linear_head = nn.Linear(hidden, 1, bias=False)


class LayerwiseMiniCPMReranker(NativeModel):
    """MiniCPM layerwise reranker (``head_type="simple"``) on its checkpoint's weights.

    Example:
        >>> m = LayerwiseMiniCPMReranker.from_pretrained("minicpm-layerwise")  # doctest: +SKIP
        >>> m.score(input_ids, attention_mask, cutoff_layers=[28]).shape  # doctest: +SKIP
        torch.Size([1, 4])
    """

    ARCHITECTURES = ("LayerWiseMiniCPMForCausalLM",)

    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__(config)
        head_type = getattr(config, "head_type", "simple")
        if head_type != "simple":
            msg = (f"head_type {head_type!r} is not supported: FlagEmbedding's layerwise "
                   "reranker scores only head_type='simple' checkpoints.")
            raise ValueError(msg)
        self.start_layer = int(getattr(config, "start_layer", 8))
        self.model = _Backbone(config)
        n_heads = config.num_hidden_layers + 1 - self.start_layer
        self.head_multi = bool(getattr(config, "head_multi", True))
        self.lm_head: nn.Module = (nn.ModuleList(_Head(config.hidden_size) for _ in range(n_heads))
                                   if self.head_multi else _Head(config.hidden_size))

    @property
    def valid_layers(self) -> list[int]:
        """Layers with a score head: ``start_layer .. num_hidden_layers``."""
        return list(range(self.start_layer, self.config.num_hidden_layers + 1))

    def _rope(self, seq: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        head_dim = c.hidden_size // c.num_attention_heads
        base, factor = float(getattr(c, "rope_theta", 10000.0)), 1.0
        scaling = getattr(c, "rope_scaling", None) or {}
        kind = scaling.get("type") or scaling.get("rope_type")
        max_pos = getattr(c, "max_position_embeddings", 2048)
        if kind == "linear":
            factor = float(scaling["factor"])
        elif kind == "dynamic" and seq > max_pos:
            f = float(scaling["factor"])
            base = base * ((f * seq / max_pos) - (f - 1)) ** (head_dim / (head_dim - 2))
        cos, sin = rotary(head_dim, base, torch.arange(seq, device=device), scaling=factor)
        return cos[None], sin[None]

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              cutoff_layers: Sequence[int]) -> torch.Tensor:
        """Scores ``(len(cutoff_layers), batch)`` (float32) at each row's last real token;
        ``cutoff_layers`` sorted ascending, each in :attr:`valid_layers`."""
        hidden = self.model.embed_tokens(input_ids) * getattr(self.config, "scale_emb", 1)
        mask = additive_causal_mask(attention_mask, hidden.dtype)
        rope = self._rope(input_ids.shape[1], input_ids.device)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        last = last_positions(attention_mask)
        wanted, top = set(cutoff_layers), max(cutoff_layers)
        scores = []
        for idx in range(top + 1):
            if idx in wanted:
                state = self.model.norm(hidden[rows, last])
                head = self.lm_head[idx - self.start_layer] if self.head_multi else self.lm_head
                scores.append(head.linear_head(state)[:, 0].float())
            if idx == top:
                break
            hidden = self.model.layers[idx](hidden, mask, rope)
        return torch.stack(scores)
