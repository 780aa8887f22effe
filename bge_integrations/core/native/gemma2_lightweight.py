"""BAAI/bge-reranker-v2.5-gemma2-lightweight, natively: Gemma-2 with per-layer score heads and
passage-token compression.

The checkpoint's own code (``CostWiseGemmaForCausalLM``) needs transformers 4.46 exactly. This
module reads the same ``config.json`` keys and weight names and computes what FlagEmbedding
1.4.2's ``LightWeightFlagLLMReranker`` does:

- Gemma-2 layers: embeddings times ``sqrt(hidden_size)``; RMSNorm ``x * (1 + w)`` in float32;
  attention scaled by ``query_pre_attn_scalar ** -0.5`` with ``attn_logit_softcapping``, a
  sliding window on even layers (or where ``layer_types`` says so); four norms per layer;
  ``gelu_pytorch_tanh`` MLP; positions ``0..seq-1``, renumbered after each compression;
- compression (``compress_ratio`` > 1): before each layer in ``compress_layers`` (not layer 0)
  every row's passage tokens are averaged in consecutive groups of ``compress_ratio`` (the last
  group over the tokens it has) while the query part (``[bos] query \\n``) and the prompt part
  (``\\n prompt``) stay as they are;
- the scores: for the sorted cutoff layers, head ``i`` (the ``i``-th, as upstream indexes them)
  on ``norm(h_layer)`` at the last real token, then ``final_logit_softcapping``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import torch
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

__all__ = ["LightweightGemma2Reranker", "compress_passages"]


class _RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * (1.0 + self.weight.float())).type_as(x)


class _Attention(AttentionProjections):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__(c, getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads)
        self.scaling = float(getattr(c, "query_pre_attn_scalar", self.head_dim)) ** -0.5
        self.softcap = getattr(c, "attn_logit_softcapping", None)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        q, k, v = self.split(x)
        q, k = apply_rotary(q, k, *rope, in_float32=False)
        weights = torch.matmul(q, repeat_kv(k, self.groups).transpose(2, 3)) * self.scaling
        if self.softcap is not None:
            weights = torch.tanh(weights / self.softcap) * self.softcap
        weights = torch.softmax(weights + mask, dim=-1, dtype=torch.float32).to(q.dtype)
        return self.merge(torch.matmul(weights, repeat_kv(v, self.groups)))


class _Layer(nn.Module):
    def __init__(self, c: SimpleNamespace, sliding: bool) -> None:
        super().__init__()
        eps = getattr(c, "rms_norm_eps", 1e-6)
        self.self_attn = _Attention(c)
        act = getattr(c, "hidden_activation", None) or getattr(c, "hidden_act", None)
        self.mlp = GatedMLP(c, act or "gelu_pytorch_tanh")
        self.input_layernorm = _RMSNorm(c.hidden_size, eps)
        self.post_attention_layernorm = _RMSNorm(c.hidden_size, eps)
        self.pre_feedforward_layernorm = _RMSNorm(c.hidden_size, eps)
        self.post_feedforward_layernorm = _RMSNorm(c.hidden_size, eps)
        self.sliding = sliding

    def forward(self, x: torch.Tensor, masks: tuple[torch.Tensor, torch.Tensor],
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mask = masks[1] if self.sliding else masks[0]
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), mask, rope))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class _Backbone(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        types = getattr(c, "layer_types", None)
        sliding = [t == "sliding_attention" for t in types] if types else [
            i % 2 == 0 for i in range(c.num_hidden_layers)]
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(_Layer(c, sliding[i]) for i in range(c.num_hidden_layers))
        self.norm = _RMSNorm(c.hidden_size, getattr(c, "rms_norm_eps", 1e-6))


class _Head(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.linear_head = nn.Linear(hidden, 1, bias=False)


def compress_passages(hidden: torch.Tensor, attention_mask: torch.Tensor, ratio: int,
                      query_lengths: torch.Tensor, prompt_lengths: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Average each row's passage tokens in groups of ``ratio`` (right-padded rows).

    Row layout: ``query_lengths[i]`` tokens, the passage, ``prompt_lengths[i]`` tokens, padding.
    Returns the new hidden states and mask, right-padded with zeros.
    """
    rows = []
    for i in range(hidden.shape[0]):
        length = int(attention_mask[i].sum())
        q, p = int(query_lengths[i]), int(prompt_lengths[i])
        passage = hidden[i, q:length - p]
        n = passage.shape[0]
        groups = (n + ratio - 1) // ratio
        padded = hidden.new_zeros((groups * ratio, hidden.shape[-1]))
        padded[:n] = passage
        counts = torch.full((groups,), float(ratio), dtype=hidden.dtype, device=hidden.device)
        if n % ratio:
            counts[-1] = n % ratio
        weights = torch.zeros(groups * ratio, dtype=hidden.dtype, device=hidden.device)
        weights[:n] = 1
        weights = (weights.view(groups, ratio) / counts[:, None]).view(-1)
        pooled = (padded * weights[:, None]).view(groups, ratio, -1).sum(dim=1)
        rows.append(torch.cat([hidden[i, :q], pooled, hidden[i, length - p:length]]))
    width = max(r.shape[0] for r in rows)
    out = hidden.new_zeros((len(rows), width, hidden.shape[-1]))
    mask = torch.zeros((len(rows), width), dtype=attention_mask.dtype,
                       device=attention_mask.device)
    for i, row in enumerate(rows):
        out[i, :row.shape[0]] = row
        mask[i, :row.shape[0]] = 1
    return out, mask


class LightweightGemma2Reranker(NativeModel):
    """bge-reranker-v2.5-gemma2-lightweight (``layer_wise=True``) on its checkpoint's weights.

    Example:
        >>> m = LightweightGemma2Reranker.from_pretrained("path/to/lightweight")  # doctest: +SKIP
    """

    ARCHITECTURES = ("CostWiseGemmaForCausalLM",)

    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__(config)
        if not getattr(config, "layer_wise", False):
            msg = ("This checkpoint has layer_wise=false: it is a plain Gemma-2 causal LM; "
                   "use kind='llm' for it.")
            raise ValueError(msg)
        self.start_layer = int(getattr(config, "start_layer", 28))
        self.layer_sep = int(getattr(config, "layer_sep", 28))
        self.model = _Backbone(config)
        self.lm_head = nn.ModuleList(_Head(config.hidden_size) for _ in self.valid_layers)

    @property
    def valid_layers(self) -> list[int]:
        """Layers with a score head: ``start_layer, start_layer + layer_sep, ...``."""
        return list(range(self.start_layer, self.config.num_hidden_layers + 1, self.layer_sep))

    def _rope(self, seq: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        cos, sin = rotary(head_dim, float(getattr(c, "rope_theta", 10000.0)),
                          torch.arange(seq, device=device))
        return cos[None], sin[None]

    def _masks(self, attention_mask: torch.Tensor, dtype: torch.dtype
               ) -> tuple[torch.Tensor, torch.Tensor]:
        window = getattr(self.config, "sliding_window", None)
        full = additive_causal_mask(attention_mask, dtype)
        return full, additive_causal_mask(attention_mask, dtype, window) if window else full

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              cutoff_layers: Sequence[int], *, compress_ratio: int = 1,
              compress_layers: Sequence[int] = (), query_lengths: torch.Tensor | None = None,
              prompt_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``(len(cutoff_layers), batch)`` (float32); rows right-padded, cutoff layers
        sorted ascending and in :attr:`valid_layers`."""
        c = self.config
        hidden = self.model.embed_tokens(input_ids)
        hidden = hidden * torch.tensor(c.hidden_size ** 0.5, dtype=hidden.dtype)
        masks = self._masks(attention_mask, hidden.dtype)
        rope = self._rope(hidden.shape[1], hidden.device)
        cap = getattr(c, "final_logit_softcapping", None)
        wanted, top = set(cutoff_layers), max(cutoff_layers)
        compress = set(compress_layers) if compress_ratio > 1 else set()
        states = []
        for idx in range(top + 1):
            if idx in wanted:
                rows = torch.arange(hidden.shape[0], device=hidden.device)
                states.append(self.model.norm(hidden[rows, last_positions(attention_mask)]))
            if idx == top:
                break
            if idx in compress and idx != 0:
                hidden, attention_mask = compress_passages(
                    hidden, attention_mask, compress_ratio, query_lengths, prompt_lengths)
                masks = self._masks(attention_mask, hidden.dtype)
                rope = self._rope(hidden.shape[1], hidden.device)
            hidden = self.model.layers[idx](hidden, masks, rope)
        scores = []
        for i, state in enumerate(states):
            logit = self.lm_head[i].linear_head(state)[:, 0]
            if cap is not None:
                logit = torch.tanh(logit / cap) * cap
            scores.append(logit.float())
        return torch.stack(scores)
