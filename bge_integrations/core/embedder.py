"""BGEEmbedder: dense embeddings with the right instruction, ICL prompt and pooling per model."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .batcher import Batcher
from .checkpoint import check_length, resolve_lengths
from .engine import Engine, Head, padding_side_for
from .inputs import optional_positive_int, validate_texts
from .loading import LoadedModel, ModelHandle, load_model
from .pooling import pool
from .prompts import build_icl_prefix, format_query, icl_query_token_ids
from .registry import (
    DEFAULT_MODEL,
    Family,
    ModelSpec,
    Pooling,
    find_spec,
    register_model,
    resolve_spec,
)

__all__ = ["BGEEmbedder", "DEFAULT_MODEL"]

_OUTPUT_DTYPES = {"float32": np.float32, "float16": np.float16}


class EncoderBase(ModelHandle):
    """Loading, options and the engine shared by :class:`BGEEmbedder` and ``BGEM3Embedder``."""

    def __init__(self, model_name_or_path: str | os.PathLike[str], spec: ModelSpec, *,
                 device: str | Sequence[str] = "auto", dtype: str = "auto",
                 query_max_length: int | None = None,
                 passage_max_length: int | None = None, normalize: bool = True,
                 batch_size: int = 256, max_batch_tokens: int | None = None,
                 show_progress: bool = False, trust_remote_code: bool = False,
                 max_texts_per_call: int | None = None,
                 max_tokens_per_call: int | None = None,
                 num_workers: int | None = None, backend: str = "torch",
                 int8_calibration: Sequence[str] | None = None) -> None:
        self.model_name = os.fspath(model_name_or_path)
        if spec.trust_remote_code and not trust_remote_code:
            msg = (f"Model {self.model_name!r} needs its own modelling code "
                   "(trust_remote_code=True in the registry). Remote code is off by default; "
                   "pass trust_remote_code=True if you trust the model's source.")
            raise ValueError(msg)
        self._spec = spec
        query_max_length = optional_positive_int(query_max_length, "query_max_length")
        passage_max_length = optional_positive_int(passage_max_length, "passage_max_length")
        self.normalize = bool(normalize)
        self.max_texts_per_call = optional_positive_int(max_texts_per_call, "max_texts_per_call")
        loaded = [load_model(self.model_name, device=d, dtype=dtype,
                             trust_remote_code=trust_remote_code, show_progress=show_progress,
                             backend=backend, int8_calibration=int8_calibration)
                  for d in _devices(device)]
        self._loaded: LoadedModel = loaded[0]
        self.query_max_length, self.passage_max_length, self._max_positions = resolve_lengths(
            self._loaded.path, spec.max_length, query_max_length, passage_max_length)
        self._engine = Engine(self._loaded, replicas=loaded[1:], batch_size=batch_size,
                              max_batch_tokens=max_batch_tokens, show_progress=show_progress,
                              max_tokens_per_call=optional_positive_int(
                                  max_tokens_per_call, "max_tokens_per_call"),
                              num_workers=num_workers,
                              padding_side=padding_side_for(spec.pooling,
                                                            self._loaded.tokenizer))
        self._batcher: Batcher | None = None

    def share_batches(self, **options: Any) -> Batcher:
        """Let concurrent calls of this embedder share forward passes (a service's case).

        From now on every call goes through one :class:`~.batcher.Batcher`: texts that threads
        submit within ``max_wait_ms`` run in one engine call. ``options`` are the batcher's
        (``max_wait_ms``, ``round_tokens``, ``max_tokens_per_call``). Outputs do not change.

        Example:
            >>> batcher = emb.share_batches(max_wait_ms=2)  # doctest: +SKIP
            >>> batcher.close()  # when done serving  # doctest: +SKIP
        """
        if self._batcher is not None:
            msg = "share_batches() was already called on this embedder; it has a batcher."
            raise RuntimeError(msg)
        self._batcher = Batcher(self._engine, **options)
        return self._batcher

    def _run(self, token_ids: list[list[int]], head: Head, *, first_token_only: bool,
             key: Hashable | None = None) -> list[Any]:
        """The engine's run, through the batcher once :meth:`share_batches` made one."""
        if self._batcher is not None:
            return self._batcher.run(token_ids, head, first_token_only=first_token_only, key=key)
        return self._engine.run(token_ids, head, first_token_only=first_token_only)

    @property
    def spec(self) -> ModelSpec:
        """The effective model description (registry row with your overrides)."""
        return self._spec

    @property
    def dim(self) -> int:
        """Output dimension of the dense vector."""
        return self._loaded.hidden_size

    @property
    def backend(self) -> str:
        """The backend that runs the backbone (``"auto"`` resolved to the one it chose)."""
        return self._loaded.backend

    def _texts(self, texts: object, name: str) -> list[str]:
        return validate_texts(texts, name=name, max_texts=self.max_texts_per_call)

    def _max_length(self, max_length: int | None) -> int:
        """A per-call ``max_length`` (default ``passage_max_length``), checked like the options."""
        value = optional_positive_int(max_length, "max_length")
        if value is None:
            return self.passage_max_length
        return check_length("max_length", value, self._max_positions, self._loaded.path)

    def _tokenize(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        return self._engine.tokenize(texts, max_length)

    # -- pickling: the configuration travels, never the weights -----------------------------
    def __new__(cls, *args: Any, **kwargs: Any) -> EncoderBase:
        """Record the constructor arguments, so that a pickle can carry them instead of weights."""
        self = super().__new__(cls)
        self._init_arguments = (args, kwargs)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle (and ``copy.deepcopy``) to the constructor arguments and the plain settings
        changed since; the other side loads the weights from its model cache (or from disk)."""
        args, kwargs = self._init_arguments
        state = {k: v for k, v in vars(self).items() if k in _PICKLED_SETTINGS}
        return _rebuild, (type(self), args, kwargs, find_spec(self.model_name)), state


#: plain attributes a pickle carries besides the constructor arguments (a user may change them)
_PICKLED_SETTINGS = frozenset({"query_max_length", "passage_max_length", "normalize",
                               "max_texts_per_call", "_icl_prefix"})


def ensure_registered(spec: ModelSpec | None) -> None:
    """Register ``spec`` (a registry row pickled by another process) unless this process
    knows its model already; used when unpickling embedders and adapters."""
    if spec is not None and find_spec(spec.name) is None:
        with contextlib.suppress(ValueError):  # another thread registered it meanwhile
            register_model(spec)


def _rebuild(cls: type[EncoderBase], args: tuple[Any, ...], kwargs: dict[str, Any],
             registered: ModelSpec | None = None) -> EncoderBase:
    """Unpickle: construct anew (the weights come from the model cache or the disk), with the
    sender's registry row for a model it registered itself."""
    ensure_registered(registered)
    return cls(*args, **kwargs)


def _devices(device: str | Sequence[str] | None) -> list[str | None]:
    """One device, or a non-empty list of them (one model replica and worker each)."""
    if device is None or isinstance(device, str | torch.device):
        return [device]
    if not isinstance(device, Sequence) or not device:
        msg = (f"device must be a device name or a non-empty list of them, got {device!r}; "
               "e.g. 'cuda:0' or ['cuda:0', 'cuda:1'].")
        raise ValueError(msg)
    return list(device)


class BGEEmbedder(EncoderBase):
    """Dense embeddings for any registered model (BGE v1/v1.5, bge-m3 dense, bge-en-icl, E5, ...).

    The model's registry row supplies pooling, query instruction and its format; every keyword
    overrides it. Queries get the instruction (or the ICL few-shot prompt), documents never do.

    Args:
        model_name_or_path: hub id or local directory. A folder is matched to the registry by
            its name, else by the hub id it records (a Hugging Face cache path, or the
            ``_name_or_path`` of its config.json); a renamed copy that records none gets no
            registry settings: without ``pooling`` that is an error that says so, and with
            ``pooling`` a warning when its name resembles a registered model whose
            instruction or pooling you did not pass. A name not registered raises
            :class:`~bge_integrations.UnknownModelError` naming the close registry entries.
        pooling: ``"cls"``, ``"mean"`` or ``"last_token"`` (required for unregistered models).
        query_instruction: instruction for queries; ``None`` keeps the registry's, ``""`` none.
        query_instruction_format: ``format(instruction, query)`` template.
        examples: ICL few-shot examples (``instruct``/``query``/``response`` dicts), bge-en-icl.
        device: ``"auto"`` (cuda > mps > cpu), ``"cpu"``, ``"cuda:0"``, ...; or a list such as
            ``["cuda:0", "cuda:1"]``: one model replica per device, batches shared out among them
            (threads, no process pool).
        dtype: ``"auto"`` (float16 on CUDA, float32 on CPU), ``"float32"``, ``"float16"``,
            ``"bfloat16"`` or ``"int8"`` (dynamic quantization, CPU).
        query_max_length: token limit for queries (longer ones are truncated; default: the
            passage default, at most 512).
        passage_max_length: token limit for documents (default: the registry's, else the
            checkpoint's own ``sentence_bert_config.json`` ``max_seq_length`` or tokenizer
            ``model_max_length``, else 512; never more than the model's positions). A value
            beyond the model's position table raises ``ValueError`` here, not at the first
            long text.
        normalize: L2-normalize the output.
        batch_size: most texts per forward pass.
        max_batch_tokens: most padded tokens per forward pass (``None``: 512 on a CPU,
            1,024 with ``backend="openvino"``; more on GPUs).
        show_progress: tqdm progress bar.
        trust_remote_code: allow the checkpoint's own Python code.
        max_texts_per_call: reject calls with more texts, with a clear error (``None``: no limit).
        max_tokens_per_call: reject calls whose texts hold more tokens after truncation.
        num_workers: CPU batches run side by side, each on its share of torch's threads
            (``None``: 2 when torch has 2 or more threads; GPUs run batches in turn).
        backend: what runs the backbone: ``"torch"`` (default), ``"onnx"`` (ONNX Runtime,
            ``pip install 'bge-integrations[onnx]'``), ``"openvino"`` (``[openvino]``), both on
            the CPU in float32 or ``dtype="int8"``, or ``"auto"`` (the fastest measured on
            this CPU; docs/performance.md). Pooling, heads and batching are the same for all.
        int8_calibration: texts like the ones you will embed (a few hundred), for
            ``backend="openvino", dtype="int8"``: static int8 scales measured on them once
            (NNCF; cached with the graph), faster than the default dynamic int8
            (docs/backends.md). Needs ``[openvino]``; other backends refuse it.

    Example:
        >>> emb = BGEEmbedder("BAAI/bge-small-en-v1.5")  # doctest: +SKIP
        >>> emb.encode_queries(["what is BGE?"]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(self, model_name_or_path: str = DEFAULT_MODEL, *, pooling: str | None = None,
                 query_instruction: str | None = None,
                 query_instruction_format: str | None = None,
                 examples: Sequence[Mapping[str, str]] | None = None,
                 device: str | Sequence[str] = "auto",
                 dtype: str = "auto", query_max_length: int | None = None,
                 passage_max_length: int | None = None, normalize: bool = True,
                 batch_size: int = 256, max_batch_tokens: int | None = None,
                 show_progress: bool = False, trust_remote_code: bool = False,
                 max_texts_per_call: int | None = None,
                 max_tokens_per_call: int | None = None,
                 num_workers: int | None = None, backend: str = "torch",
                 int8_calibration: Sequence[str] | None = None) -> None:
        spec = resolve_spec(model_name_or_path, pooling=pooling,
                            query_instruction=query_instruction,
                            query_instruction_format=query_instruction_format)
        super().__init__(model_name_or_path, spec, device=device, dtype=dtype,
                         query_max_length=query_max_length,
                         passage_max_length=passage_max_length, normalize=normalize,
                         batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                         show_progress=show_progress, trust_remote_code=trust_remote_code,
                         max_texts_per_call=max_texts_per_call,
                         max_tokens_per_call=max_tokens_per_call, num_workers=num_workers,
                         backend=backend, int8_calibration=int8_calibration)
        self._icl_prefix = ""
        if examples is not None:
            self.set_examples(examples)

    # -- prompts -----------------------------------------------------------------------------
    def set_examples(self, examples: Sequence[Mapping[str, str]] | None) -> None:
        """Set (or clear with ``None``) the ICL few-shot examples used for queries."""
        if self._spec.family is not Family.ICL:
            msg = (f"examples apply to in-context-learning models (family 'icl', e.g. "
                   f"BAAI/bge-en-icl); {self.model_name!r} is family "
                   f"{self._spec.family.value!r}.")
            raise ValueError(msg)
        self._icl_prefix = build_icl_prefix(examples, self._spec.query_instruction)

    def query_texts(self, queries: Sequence[str]) -> list[str]:
        """Queries with the instruction applied (before any ICL prefix)."""
        spec = self._spec
        return [format_query(spec.query_instruction_format, spec.query_instruction, q)
                for q in queries]

    def document_texts(self, documents: Sequence[str]) -> list[str]:
        """Documents with the model's passage prefix (only E5 models have one)."""
        prefix = self._spec.passage_prefix or ""
        return [prefix + d for d in documents]

    def _query_token_ids(self, queries: list[str]) -> list[list[int]]:
        bodies = self.query_texts(queries)
        if self._spec.family is Family.ICL:
            return self._engine.call_tokenizer(
                lambda tok: icl_query_token_ids(tok, bodies, self._icl_prefix,
                                                self.query_max_length))
        return self._tokenize(bodies, self.query_max_length)

    # -- encoding ----------------------------------------------------------------------------
    def encode_queries(self, queries: Sequence[str], *, output_dtype: str = "float32"
                       ) -> np.ndarray:
        """Embed search queries (instruction / ICL prompt applied). Shape ``(n, dim)``."""
        queries = self._texts(queries, "queries")
        return self._embed(self._query_token_ids(queries) if queries else [], output_dtype)

    def encode_documents(self, documents: Sequence[str], *, output_dtype: str = "float32"
                         ) -> np.ndarray:
        """Embed passages / documents (no instruction). Shape ``(n, dim)``."""
        documents = self._texts(documents, "documents")
        ids = self._tokenize(self.document_texts(documents), self.passage_max_length) \
            if documents else []
        return self._embed(ids, output_dtype)

    def encode(self, texts: Sequence[str], *, max_length: int | None = None,
               output_dtype: str = "float32") -> np.ndarray:
        """Embed texts as they are: no instruction, no prefix. Shape ``(n, dim)``."""
        texts = self._texts(texts, "texts")
        limit = self._max_length(max_length)
        return self._embed(self._tokenize(texts, limit) if texts else [], output_dtype)

    def encode_iter(self, documents: Iterable[str], *, chunk_size: int = 1024,
                    output_dtype: str = "float32") -> Iterator[np.ndarray]:
        """Embed a stream of documents chunk by chunk; memory stays bounded by one chunk.

        Yields arrays of shape ``(<= chunk_size, dim)`` in input order.
        """
        if chunk_size <= 0:
            msg = f"chunk_size must be positive, got {chunk_size}."
            raise ValueError(msg)
        if isinstance(documents, str | bytes):
            validate_texts(documents, name="documents")
        chunk: list[str] = []
        for doc in documents:
            chunk.append(doc)
            if len(chunk) == chunk_size:
                yield self.encode_documents(chunk, output_dtype=output_dtype)
                chunk = []
        if chunk:
            yield self.encode_documents(chunk, output_dtype=output_dtype)

    def _dense_head(self, hidden: torch.Tensor, _ids: torch.Tensor, mask: torch.Tensor
                    ) -> np.ndarray:
        emb = pool(hidden, mask, self._spec.pooling).float()
        if self.normalize:
            emb = F.normalize(emb, dim=-1)
        return emb.cpu().numpy()

    def _embed(self, token_ids: list[list[int]], output_dtype: str) -> np.ndarray:
        if output_dtype not in _OUTPUT_DTYPES:
            msg = f"output_dtype must be one of {sorted(_OUTPUT_DTYPES)}, got {output_dtype!r}."
            raise ValueError(msg)
        out_type = _OUTPUT_DTYPES[output_dtype]
        if not token_ids:
            return np.zeros((0, self.dim), dtype=out_type)
        rows = self._run(token_ids, self._dense_head,
                         first_token_only=self._spec.pooling is Pooling.CLS)
        return np.stack(rows).astype(out_type, copy=False)
