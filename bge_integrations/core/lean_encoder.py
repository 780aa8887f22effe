"""A lean forward pass for BERT-style encoders, with the last layer for the first token only.

transformers' own forward wraps every layer in output-recording hooks, mask builders and
attention dispatch; on a CPU that Python costs a few milliseconds per batch. This module runs
the same submodules (embeddings, query/key/value, attention output, feed-forward) in one plain
loop with PyTorch's SDPA: the same operations on the same numbers (float rounding at most).

CLS pooling reads one row of the last layer, so with ``first_token_only`` that layer computes
the keys and values of every token and everything else for the first token alone: about 7% of
a 12-layer model's work, exactly.

Only layers whose structure is known run here (BERT, RoBERTa, XLM-RoBERTa encoders with
absolute positions); anything else runs the model's own forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["LeanEncoder", "lean_encoder"]

_ENCODER_LAYERS = frozenset({"BertLayer", "RobertaLayer", "XLMRobertaLayer"})


@dataclass(frozen=True)
class LeanEncoder:
    """The embeddings and encoder layers of a BERT-style model (its modules, shared)."""

    embeddings: torch.nn.Module
    layers: tuple[torch.nn.Module, ...]

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                 first_token_only: bool = False) -> torch.Tensor:
        """Last hidden states ``(batch, seq, hidden)``; ``(batch, 1, hidden)`` for the first
        token only."""
        hidden = self.embeddings(input_ids=input_ids)
        keep = None if bool(attention_mask.all()) else attention_mask[:, None, None, :].bool()
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            hidden = _layer(layer, hidden, keep, first_row=first_token_only and last)
        return hidden


def lean_encoder(model: torch.nn.Module) -> LeanEncoder | None:
    """A :class:`LeanEncoder` over ``model``'s modules, or None if its layout is unknown."""
    config = getattr(model, "config", None)
    embeddings = getattr(model, "embeddings", None)
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if (config is None or embeddings is None or not isinstance(layers, torch.nn.ModuleList)
            or not layers
            or any(type(layer).__name__ not in _ENCODER_LAYERS for layer in layers)
            or getattr(config, "is_decoder", False)
            or getattr(config, "add_cross_attention", False)
            or getattr(config, "position_embedding_type", "absolute") != "absolute"):
        return None
    for layer in layers:
        attention = getattr(getattr(layer, "attention", None), "self", None)
        if not all(hasattr(attention, name) for name in
                   ("query", "key", "value", "num_attention_heads", "attention_head_size")):
            return None
    return LeanEncoder(embeddings=embeddings, layers=tuple(layers))


def _layer(layer: torch.nn.Module, hidden: torch.Tensor, keep: torch.Tensor | None, *,
           first_row: bool) -> torch.Tensor:
    """One encoder layer; with ``first_row`` its output for the first token only."""
    attn = layer.attention.self
    batch, seq, _ = hidden.shape
    heads, head_size = attn.num_attention_heads, attn.attention_head_size
    rows = hidden[:, :1] if first_row else hidden
    query = attn.query(rows).view(batch, -1, heads, head_size).transpose(1, 2)
    key = attn.key(hidden).view(batch, seq, heads, head_size).transpose(1, 2)
    value = attn.value(hidden).view(batch, seq, heads, head_size).transpose(1, 2)
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=keep)
    context = context.transpose(1, 2).reshape(batch, rows.shape[1], heads * head_size)
    attended = layer.attention.output(context, rows)
    return layer.output(layer.intermediate(attended), attended)
