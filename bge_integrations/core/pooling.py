"""Pooling: token states (batch, seq, hidden) -> one vector per text (batch, hidden)."""

from __future__ import annotations

import torch

from .registry import Pooling

__all__ = ["pool"]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, method: Pooling) -> torch.Tensor:
    """Pool ``hidden`` with ``method``; padding is excluded via ``attention_mask``.

    ``mean`` sums and divides in float32 whatever the model's dtype (as FlagEmbedding does:
    a float16 sum over hundreds of tokens loses digits). ``last_token`` handles left padding
    (every row ends with a real token) and right padding (the last real token sits at
    ``mask.sum() - 1``), as FlagEmbedding does.
    """
    if method is Pooling.CLS:
        return hidden[:, 0]
    if method is Pooling.MEAN:
        mask = attention_mask.unsqueeze(-1).float()
        return (hidden * mask).sum(dim=1) / attention_mask.sum(dim=1, keepdim=True).float()
    if method is Pooling.LAST_TOKEN:
        if bool(attention_mask[:, -1].all()):
            return hidden[:, -1]
        last = attention_mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    msg = f"Unknown pooling {method!r}; valid: {[m.value for m in Pooling]}."
    raise ValueError(msg)
