"""The PyTorch backbone: the lean encoder pass for BERT-style models, the model's own forward
for everything else."""

from __future__ import annotations

import threading

import torch

from ..core.lean_encoder import LeanEncoder, lean_encoder

__all__ = ["TorchBackbone"]


class TorchBackbone:
    """Runs a loaded ``transformers`` model eagerly (see :mod:`bge_integrations.core.lean_encoder`).

    Example:
        >>> backbone = TorchBackbone(model)  # doctest: +SKIP
        >>> backbone(ids, mask).shape  # doctest: +SKIP
        torch.Size([2, 7, 384])
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self._lean: LeanEncoder | None = None
        self._lean_built = False
        self._lock = threading.Lock()

    @property
    def lean(self) -> LeanEncoder | None:
        """The lean forward pass over the model's modules, if its layout allows one."""
        with self._lock:
            if not self._lean_built:
                self._lean = lean_encoder(self.model)
                self._lean_built = True
            return self._lean

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                 first_token_only: bool = False) -> torch.Tensor:
        lean = self.lean
        if lean is not None:
            return lean(input_ids, attention_mask, first_token_only=first_token_only)
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          return_dict=True).last_hidden_state
