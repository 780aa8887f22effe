"""The one inference loop: load once, tokenize, length-sort, token-budget batches, un-sort.

Every embedder (dense, ICL, decoder, BGE-M3) runs through :class:`Engine`; what differs is the
*head* it passes in: a function from a padded batch's last hidden state to per-text results.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import transformers
from packaging.version import Version
from tqdm.auto import tqdm

from .first_token import FirstTokenModel, first_token_model
from .hardware import resolve_device, resolve_dtype
from .resolve import resolve_model_dir

__all__ = ["LoadedModel", "load_model", "clear_model_cache", "Engine", "Head"]

T = TypeVar("T")
#: (last_hidden_state, input_ids, attention_mask) -> one result per row of the batch
Head = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Sequence[T]]

#: compute dtype name -> torch dtype of the weights (int8 keeps float32 outside quantized Linear)
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16,
                 "bfloat16": torch.bfloat16, "int8": torch.float32}
_DTYPE_KWARG = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
#: default padded-token budget per forward pass, by device type. CPU: swept 512-8192 on a
#: bge-small-shaped BERT (docs/performance.md); 1024 was fastest with 1 thread and tied with
#: 2048 with 2, and holds half the activations. GPU values are not measured yet.
DEFAULT_BATCH_TOKENS = {"cpu": 1024, "mps": 8192, "cuda": 32768}
#: most CPU batches in flight at once by default (docs/performance.md: two single-threaded
#: batches side by side beat one batch on two threads by 1.2-1.4x on a 2-core machine)
DEFAULT_CPU_WORKERS = 2


@dataclass
class LoadedModel:
    """A tokenizer and backbone loaded once and shared by every embedder that uses them."""

    name: str
    path: str
    tokenizer: Any
    model: torch.nn.Module
    device: torch.device
    dtype: str
    tokenizer_lock: threading.Lock = field(default_factory=threading.Lock)
    extras: dict[str, Any] = field(default_factory=dict)
    extras_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def first_token(self) -> FirstTokenModel | None:
        """The backbone computing the last layer for the first token only, if its layout allows."""
        return self.extra("first_token_model", lambda: first_token_model(self.model))

    def extra(self, key: str, build: Callable[[], Any]) -> Any:
        """Load-once storage for parts tied to this model (e.g. BGE-M3 heads)."""
        with self.extras_lock:
            if key not in self.extras:
                self.extras[key] = build()
            return self.extras[key]


_CACHE: dict[tuple[str, str, str, bool], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def clear_model_cache() -> None:
    """Forget every cached model (their memory is freed once no embedder holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def load_model(name_or_path: str, *, device: str | torch.device | None = "auto",
               dtype: str | torch.dtype | None = "auto",
               trust_remote_code: bool = False) -> LoadedModel:
    """Load (or reuse) tokenizer + backbone for ``(model, device, dtype)``."""
    resolved_device = resolve_device(device)
    dtype_name = resolve_dtype(dtype, resolved_device)
    path = resolve_model_dir(name_or_path)
    key = (path, str(resolved_device), dtype_name, bool(trust_remote_code))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        loaded = _load_uncached(name_or_path, path, resolved_device, dtype_name,
                                trust_remote_code)
        _CACHE[key] = loaded
        return loaded


def _load_uncached(name: str, path: str, device: torch.device, dtype_name: str,
                   trust_remote_code: bool) -> LoadedModel:
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModel.from_pretrained(
            path, trust_remote_code=trust_remote_code,
            **{_DTYPE_KWARG: TORCH_DTYPES[dtype_name]},
        )
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            msg = (f"Model {name!r} ships custom code; pass trust_remote_code=True if you "
                   "trust its source.")
            raise ValueError(msg) from exc
        raise
    except OSError as exc:
        msg = f"Could not load model {name!r} from {path!r}: {exc}"
        raise OSError(msg) from exc
    model.config.use_cache = False
    model.eval()
    if dtype_name == "int8":
        model = quantize_int8(model)
    model.to(device)
    return LoadedModel(name=name, path=path, tokenizer=tokenizer, model=model, device=device,
                       dtype=dtype_name)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of every ``nn.Linear`` (CPU), weights quantized per channel.

    Per-channel weight scales keep quality: on STS-B dev, all-MiniLM-L6-v2 loses 0.10 Spearman
    points (x100) against float32, where per-tensor scales lose 0.45-0.51 (benchmarks/README.md).
    Activations are quantized per batch at run time, so int8 outputs depend slightly on which
    texts share a batch; float32 outputs do not.
    """
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8)


def _is_oom(exc: BaseException) -> bool:
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    return isinstance(exc, oom_types)


class Engine:
    """Runs texts' token ids through a loaded model, batch by batch.

    Args:
        loaded: the shared model.
        batch_size: most texts in one forward pass.
        max_batch_tokens: most padded tokens in one forward pass (None: a default per device).
        show_progress: show a tqdm bar.
        max_tokens_per_call: reject a call holding more tokens than this (``None``: no limit).
        num_workers: batches run side by side, each on its share of torch's threads
            (``None``: 2 on a CPU when torch has 2 or more threads, otherwise 1; always 1 on a
            GPU, where batches run one after the other).
    """

    def __init__(self, loaded: LoadedModel, *, batch_size: int = 256,
                 max_batch_tokens: int | None = None, show_progress: bool = False,
                 max_tokens_per_call: int | None = None,
                 num_workers: int | None = None) -> None:
        if not isinstance(batch_size, int) or batch_size <= 0:
            msg = f"batch_size must be a positive int, got {batch_size!r}."
            raise ValueError(msg)
        if max_batch_tokens is None:
            max_batch_tokens = DEFAULT_BATCH_TOKENS.get(loaded.device.type, 4096)
        if not isinstance(max_batch_tokens, int) or max_batch_tokens <= 0:
            msg = f"max_batch_tokens must be a positive int, got {max_batch_tokens!r}."
            raise ValueError(msg)
        if num_workers is not None and (not isinstance(num_workers, int)
                                        or isinstance(num_workers, bool) or num_workers <= 0):
            msg = f"num_workers must be a positive int or None, got {num_workers!r}."
            raise ValueError(msg)
        self.loaded = loaded
        self.num_workers = num_workers
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.show_progress = show_progress
        self.max_tokens_per_call = max_tokens_per_call
        tok = loaded.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._pad_id = int(pad) if pad is not None else 0
        self._left_pad = getattr(tok, "padding_side", "right") == "left"

    def tokenize(self, texts: Sequence[str], max_length: int, **kwargs: Any) -> list[list[int]]:
        """Token ids with special tokens, truncated to ``max_length``."""
        with self.loaded.tokenizer_lock:
            return self.loaded.tokenizer(list(texts), truncation=True, max_length=max_length,
                                         **kwargs)["input_ids"]

    def call_tokenizer(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(tokenizer)`` holding the tokenizer lock (fast tokenizers are not reentrant)."""
        with self.loaded.tokenizer_lock:
            return fn(self.loaded.tokenizer)

    def _pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
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
        device = self.loaded.device
        return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)

    def forward(self, rows: Sequence[Sequence[int]], head: Head[T], *,
                first_token_only: bool = False) -> Sequence[T]:
        """One padded forward pass over ``rows`` and the head on its output.

        With ``first_token_only`` the head may get only the first token's state (shape
        ``(batch, 1, hidden)``): the last layer then runs for that token alone where the model's
        layout allows it (see :mod:`.first_token`).
        """
        input_ids, attention_mask = self._pad(rows)
        shortcut = self.loaded.first_token if first_token_only else None
        if shortcut is not None:
            hidden = shortcut(input_ids, attention_mask)
        else:
            hidden = self.loaded.model(input_ids=input_ids, attention_mask=attention_mask,
                                       return_dict=True).last_hidden_state
        return head(hidden, input_ids, attention_mask)

    def workers(self) -> int:
        """Batches this call would run side by side (see ``num_workers``)."""
        if self.loaded.device.type != "cpu":
            return 1
        if self.num_workers is not None:
            return self.num_workers
        return max(1, min(DEFAULT_CPU_WORKERS, torch.get_num_threads()))

    def run(self, token_ids: Sequence[Sequence[int]], head: Head[T], *,
            first_token_only: bool = False) -> list[T]:
        """Apply ``head`` to every text, longest first in token-budget batches; input order out.

        ``first_token_only``: the head reads only the first token (CLS pooling); see
        :meth:`forward`.

        On a CPU, ``workers()`` batches run side by side in threads, each on its share of
        torch's threads; the outputs do not depend on it. On a GPU, batches run one after the
        other and an out-of-memory error retries the batch with half the token budget, down to
        one text; nothing is lost or reordered.
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
        order = np.argsort(-lengths, kind="stable")
        results: list[Any] = [None] * n
        workers = self.workers()
        with tqdm(total=n, disable=not self.show_progress, desc="Embedding",
                  unit="text") as bar:
            def forward(idx: np.ndarray) -> Sequence[T]:
                return self.forward([token_ids[i] for i in idx], head,
                                    first_token_only=first_token_only)

            if workers > 1 and n > 1:
                self._run_side_by_side(forward, lengths, order, results, bar, workers)
            else:
                self._run_in_turn(forward, lengths, order, results, bar)
        return results

    def _batch_size(self, lengths: np.ndarray, order: np.ndarray, pos: int, budget: int) -> int:
        longest = int(lengths[order[pos]])
        return max(1, min(self.batch_size, budget // longest, len(order) - pos))

    def _batches(self, lengths: np.ndarray, order: np.ndarray) -> Iterator[np.ndarray]:
        pos = 0
        while pos < len(order):
            size = self._batch_size(lengths, order, pos, self.max_batch_tokens)
            yield order[pos:pos + size]
            pos += size

    @torch.inference_mode()
    def _run_in_turn(self, forward: Callable[[np.ndarray], Sequence[Any]],
                     lengths: np.ndarray, order: np.ndarray, results: list[Any],
                     bar: tqdm) -> None:
        budget = self.max_batch_tokens
        pos = 0
        while pos < len(order):
            size = self._batch_size(lengths, order, pos, budget)
            idx = order[pos:pos + size]
            try:
                out = forward(idx)
            except Exception as exc:
                if not _is_oom(exc) or size == 1:
                    raise
                torch.cuda.empty_cache()
                budget = max(1, int(lengths[idx[0]]) * size // 2)
                continue
            for i, item in zip(idx, out):
                results[i] = item
            pos += size
            bar.update(size)

    def _run_side_by_side(self, forward: Callable[[np.ndarray], Sequence[Any]],
                          lengths: np.ndarray, order: np.ndarray, results: list[Any],
                          bar: tqdm, workers: int) -> None:
        caller_threads = torch.get_num_threads()
        per_worker = max(1, caller_threads // workers)

        @torch.inference_mode()
        def one(idx: np.ndarray) -> tuple[np.ndarray, Sequence[Any]]:
            return idx, forward(idx)

        pending: set[Future] = set()
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="bge-engine",
                                    initializer=_set_worker_threads,
                                    initargs=(per_worker,)) as pool:
                try:
                    for idx in self._batches(lengths, order):
                        if len(pending) >= 2 * workers:  # bounded: memory stays one batch each
                            pending = self._collect(pending, results, bar)
                        pending.add(pool.submit(one, idx))
                    while pending:
                        pending = self._collect(pending, results, bar)
                except BaseException:
                    for future in pending:
                        future.cancel()
                    raise
        finally:
            # torch.set_num_threads in the workers also moved the process-wide default that
            # threads started later inherit; put back what the caller had
            torch.set_num_threads(caller_threads)

    @staticmethod
    def _collect(pending: set[Future], results: list[Any], bar: tqdm) -> set[Future]:
        done, rest = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            idx, out = future.result()
            for i, item in zip(idx, out):
                results[i] = item
            bar.update(len(idx))
        return rest


def _set_worker_threads(threads: int) -> None:
    # get_num_threads() first: it runs torch's once-per-thread setup, which would otherwise
    # overwrite the value set here with the process-wide default on the first parallel op
    torch.get_num_threads()
    torch.set_num_threads(threads)
