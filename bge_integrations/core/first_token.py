"""CLS pooling reads one row of the last layer: compute that layer for the first token only.

The last encoder layer of a BERT-style model costs 1/L of the forward pass; for the first
token alone it needs only the key and value projections of every token, the rest runs on one
row per text. On a 12-layer bge-small/base that saves about 7% of the work, exactly (the
same operations on the same numbers, up to float rounding: 1e-7 at float32).

Only layers whose structure is known are shortcut (BERT, RoBERTa, XLM-RoBERTa encoders with
absolute positions); anything else runs the full model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["FirstTokenModel", "first_token_model"]

_ENCODER_LAYERS = frozenset({"BertLayer", "RobertaLayer", "XLMRobertaLayer"})


@dataclass(frozen=True)
class FirstTokenModel:
    """The backbone without its last layer (weights shared) plus that layer for row 0."""

    trunk: torch.nn.Module
    last: torch.nn.Module

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden state of the first token, shape ``(batch, 1, hidden)``."""
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask,
                            return_dict=True).last_hidden_state
        return _last_layer_first_row(self.last, hidden, attention_mask)


def first_token_model(model: torch.nn.Module) -> FirstTokenModel | None:
    """A :class:`FirstTokenModel` sharing ``model``'s weights, or None if its layout is unknown."""
    config = getattr(model, "config", None)
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if (config is None or not isinstance(layers, torch.nn.ModuleList) or len(layers) < 2
            or type(layers[-1]).__name__ not in _ENCODER_LAYERS
            or getattr(config, "is_decoder", False)
            or getattr(config, "add_cross_attention", False)
            or getattr(config, "position_embedding_type", "absolute") != "absolute"):
        return None
    self_attention = getattr(getattr(layers[-1], "attention", None), "self", None)
    if not all(hasattr(self_attention, name) for name in
               ("query", "key", "value", "num_attention_heads", "attention_head_size")):
        return None
    return FirstTokenModel(trunk=_without_last_layer(model), last=layers[-1])


def _without_last_layer(model: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy of ``model`` whose encoder stops one layer early and has no pooler."""
    encoder = copy.copy(model.encoder)
    encoder._modules = dict(model.encoder._modules)  # own module table, same layer objects
    encoder.layer = torch.nn.ModuleList(list(model.encoder.layer)[:-1])
    trunk = copy.copy(model)
    trunk._modules = dict(model._modules)
    trunk.encoder = encoder
    if "pooler" in trunk._modules:
        trunk.pooler = None
    return trunk


def _last_layer_first_row(layer: torch.nn.Module, hidden: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:
    attn = layer.attention.self
    batch, seq, _ = hidden.shape
    heads, head_size = attn.num_attention_heads, attn.attention_head_size
    first = hidden[:, :1]
    query = attn.query(first).view(batch, 1, heads, head_size).transpose(1, 2)
    key = attn.key(hidden).view(batch, seq, heads, head_size).transpose(1, 2)
    value = attn.value(hidden).view(batch, seq, heads, head_size).transpose(1, 2)
    keep = attention_mask[:, None, None, :].to(torch.bool)
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=keep)
    context = context.transpose(1, 2).reshape(batch, 1, heads * head_size)
    attended = layer.attention.output(context, first)
    return layer.output(layer.intermediate(attended), attended)
