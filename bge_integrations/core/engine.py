"""The one inference loop: load once, tokenize, length-sort, token-budget batches, un-sort.

Every embedder (dense, ICL, decoder, BGE-M3) runs through :class:`Engine`; what differs is the
*head* it passes in: a function from a padded batch's last hidden state to per-text results.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from .inputs import optional_positive_int
from .loading import LoadedModel
from .registry import Pooling
from .scheduler import BatchQueue, drain
from .tokenize_threads import token_ids_in_threads

__all__ = ["Engine", "Head", "ModelCall", "DEFAULT_BATCH_TOKENS", "DEFAULT_CPU_WORKERS",
           "padding_side_for"]

T = TypeVar("T")
#: (last_hidden_state, input_ids, attention_mask) -> one result per row of the batch
Head = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Sequence[T]]
#: (model, input_ids, attention_mask, positions of the rows in the call's input) -> what the
#: head reads, in place of the backbone's last hidden state (rerankers: logits, layer scores)
ModelCall = Callable[[LoadedModel, torch.Tensor, torch.Tensor, np.ndarray], Any]

#: default padded-token budget per forward pass, by device type. CPU: swept 256-8192 on a
#: bge-small-shaped BERT (docs/performance.md); with two single-threaded workers 512 ties
#: with 1024 on mixed texts and wins on long passages. GPU values are not measured yet.
DEFAULT_BATCH_TOKENS = {"cpu": 512, "mps": 8192, "cuda": 32768}
#: most CPU batches in flight at once by default (docs/performance.md: two single-threaded
#: batches side by side beat one batch on two threads by 1.2-1.4x on a 2-core machine)
DEFAULT_CPU_WORKERS = 2


def padding_side_for(pooling: Pooling, tokenizer: Any) -> str:
    """The padding side a pooling needs: ``"right"`` for CLS and mean pooling (the first
    token stays at position 0 with its own position id), the tokenizer's side for last-token
    pooling (which reads the last real token either way; bge-en-icl pads left, as upstream).
    """
    if pooling is not Pooling.LAST_TOKEN:
        return "right"
    return "left" if getattr(tokenizer, "padding_side", "right") == "left" else "right"


class Engine:
    """Runs texts' token ids through a loaded model, batch by batch.

    Args:
        loaded: the shared model.
        replicas: the same model loaded on further devices; each device then runs batches
            side by side with ``loaded``'s (one worker per device).
        batch_size: most texts in one forward pass.
        max_batch_tokens: most padded tokens in one forward pass (None: the backbone's
            ``batch_tokens`` when it has one, else a default per device).
        show_progress: show a tqdm bar.
        progress_label: what the bar says it is doing (``"Embedding"``, ``"Reranking"``).
        max_tokens_per_call: reject a call holding more tokens than this (``None``: no limit).
        num_workers: on a single CPU device, batches run side by side, each on its share of
            torch's threads (``None``: 2 when torch has 2 or more threads, otherwise 1). A
            single GPU runs batches one after the other; several devices run one worker each.
        padding_side: where padding goes, chosen for the pooling (:func:`padding_side_for`),
            never taken from the tokenizer's config alone: a CLS or mean vector read from a
            left-padded batch would depend on the text's batch-mates.
    """

    def __init__(self, loaded: LoadedModel, *, replicas: Sequence[LoadedModel] = (),
                 batch_size: int = 256,
                 max_batch_tokens: int | None = None, show_progress: bool = False,
                 max_tokens_per_call: int | None = None,
                 num_workers: int | None = None, padding_side: str = "right",
                 progress_label: str = "Embedding") -> None:
        if padding_side not in ("left", "right"):
            msg = f"padding_side must be 'left' or 'right', got {padding_side!r}."
            raise ValueError(msg)
        if not isinstance(batch_size, int) or batch_size <= 0:
            msg = f"batch_size must be a positive int, got {batch_size!r}."
            raise ValueError(msg)
        if max_batch_tokens is None:
            max_batch_tokens = (getattr(loaded.backbone, "batch_tokens", None)
                                or DEFAULT_BATCH_TOKENS.get(loaded.device.type, 4096))
        if not isinstance(max_batch_tokens, int) or max_batch_tokens <= 0:
            msg = f"max_batch_tokens must be a positive int, got {max_batch_tokens!r}."
            raise ValueError(msg)
        self.loaded = loaded
        self.replicas = tuple(replicas)
        self.num_workers = optional_positive_int(num_workers, "num_workers")
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.show_progress = show_progress
        self.progress_label = progress_label
        self.max_tokens_per_call = max_tokens_per_call
        tok = loaded.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._pad_id = int(pad) if pad is not None else 0
        self._left_pad = padding_side == "left"

    def tokenize(self, texts: Sequence[str], max_length: int, **kwargs: Any) -> list[list[int]]:
        """Token ids with special tokens, truncated to ``max_length`` (long texts are read only
        as far as the limit needs: :mod:`.truncate`); large calls tokenize on torch's threads
        (:mod:`.tokenize_threads`)."""
        with self.loaded.tokenizer_lock:
            return token_ids_in_threads(self.loaded.tokenizer, texts, max_length,
                                        threads=torch.get_num_threads(), **kwargs)

    def call_tokenizer(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(tokenizer)`` holding the tokenizer lock (fast tokenizers are not reentrant)."""
        with self.loaded.tokenizer_lock:
            return fn(self.loaded.tokenizer)

    def _pad(self, rows: Sequence[Sequence[int]], device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            if self._left_pad:
                ids[i, width - len(row):] = row
                mask[i, width - len(row):] = 1
            else:
                ids[i, :len(row)] = row
                mask[i, :len(row)] = 1
        return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)

    @torch.inference_mode()
    def forward(self, rows: Sequence[Sequence[int]], head: Head[T], *,
                first_token_only: bool = False, replica: LoadedModel | None = None,
                model_call: ModelCall | None = None, positions: np.ndarray | None = None
                ) -> Sequence[T]:
        """One padded forward pass over ``rows`` (on ``replica``, default the main model) and
        the head on its output.

        The model's backbone (:mod:`bge_integrations.backends`) computes the last hidden
        state: with torch, BERT-style models run :mod:`.lean_encoder`'s pass, others their own
        forward; ONNX Runtime and OpenVINO run an exported graph. With ``first_token_only`` the
        head may get only the first token's state (shape ``(batch, 1, hidden)``): the lean pass
        then runs the last layer for that token alone.
        """
        loaded = replica or self.loaded
        input_ids, attention_mask = self._pad(rows, loaded.device)
        if model_call is not None:
            return head(model_call(loaded, input_ids, attention_mask,
                                   np.arange(len(rows)) if positions is None else positions),
                        input_ids, attention_mask)
        hidden = loaded.backbone(input_ids, attention_mask, first_token_only=first_token_only)
        return head(hidden, input_ids, attention_mask)

    def workers(self) -> int:
        """Batches a call runs side by side (see ``num_workers`` and ``replicas``)."""
        if self.replicas:
            return 1 + len(self.replicas)
        if self.loaded.device.type != "cpu":
            return 1
        if self.num_workers is not None:
            return self.num_workers
        return max(1, min(DEFAULT_CPU_WORKERS, torch.get_num_threads()))

    def run(self, token_ids: Sequence[Sequence[int]], head: Head[T], *,
            first_token_only: bool = False, model_call: ModelCall | None = None) -> list[T]:
        """Apply ``head`` to every text, longest first in token-budget batches; input order out.

        ``first_token_only``: the head reads only the first token (CLS pooling); see
        :meth:`forward`. Batches run on ``workers()`` workers (:mod:`.scheduler`): on a CPU
        each uses its share of torch's threads, and the outputs do not depend on how many
        there are. A GPU out-of-memory error retries the batch with half the token budget,
        down to one text; nothing is lost or reordered. ``model_call``: see :meth:`forward`.
        """
        n = len(token_ids)
        if any(len(row) == 0 for row in token_ids):
            msg = "A text tokenized to zero tokens; the tokenizer adds no special tokens."
            raise ValueError(msg)
        lengths = np.fromiter((len(r) for r in token_ids), dtype=np.int64, count=n)
        total = int(lengths.sum())
        if self.max_tokens_per_call is not None and total > self.max_tokens_per_call:
            msg = (f"This call holds {total} tokens, over max_tokens_per_call="
                   f"{self.max_tokens_per_call}; split the input or raise the limit.")
            raise ValueError(msg)
        if n == 0:
            return []
        results: list[Any] = [None] * n
        replicas = ([self.loaded, *self.replicas] if self.replicas
                    else [self.loaded] * self.workers())[:n]
        cpu_workers = sum(r.device.type == "cpu" for r in replicas)
        cpu_threads = max(1, torch.get_num_threads() // cpu_workers) if (
            len(replicas) > 1 and cpu_workers) else None
        lock = threading.Lock()
        with tqdm(total=n, disable=not self.show_progress, desc=self.progress_label,
                  unit="text") as bar:

            def forward(replica: LoadedModel, positions: np.ndarray) -> Sequence[T]:
                return self.forward([token_ids[i] for i in positions], head,
                                    first_token_only=first_token_only, replica=replica,
                                    model_call=model_call, positions=positions)

            def done(positions: np.ndarray, out: Sequence[T]) -> None:
                with lock:
                    for i, item in zip(positions, out, strict=False):
                        results[i] = item
                    bar.update(len(positions))

            drain(BatchQueue(lengths, self.batch_size), replicas, forward, done,
                  self.max_batch_tokens, cpu_threads)
        return results
