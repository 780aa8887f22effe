"""BGEReranker: every BGE reranker (cross-encoder, LLM, layerwise, lightweight) on the engine.

The pair layout (:mod:`.rerank_layout`) and the scores equal FlagEmbedding 1.4.2's
``FlagReranker`` / ``FlagLLMReranker`` / ``LayerWiseFlagLLMReranker`` /
``LightWeightFlagLLMReranker`` at float32; the pairs run through the one
:class:`~bge_integrations.core.engine.Engine` (length-sorted token-budget batches, CPU workers,
GPU out-of-memory backoff) with a reranker's model call and head.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..backends.base import BACKENDS, check_backend
from .engine import Engine, ModelCall
from .inputs import optional_positive_int, validate_texts
from .lean_encoder import lean_encoder
from .loading import LoadedModel, ModelHandle, load_model
from .native import LayerwiseMiniCPMReranker, LightweightGemma2Reranker
from .native.common import last_positions
from .rerank_layout import (
    PromptParts,
    llm_pair_ids,
    pair_template,
    tokenize_sides,
    truncate_second,
    validate_pairs,
)
from .rerank_registry import (
    LIGHTWEIGHT_PROMPT,
    LLM_PROMPT,
    RerankerKind,
    RerankerSpec,
    get_reranker,
)

__all__ = ["BGEReranker", "DEFAULT_RERANKER", "BACKENDS"]

DEFAULT_RERANKER = "BAAI/bge-reranker-v2-m3"
_LEAN_CLASSIFIERS = frozenset({"XLMRobertaForSequenceClassification",
                               "RobertaForSequenceClassification"})


def _model_class(kind: RerankerKind) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return {RerankerKind.ENCODER: AutoModelForSequenceClassification,
            RerankerKind.LLM: AutoModelForCausalLM,
            RerankerKind.LAYERWISE: LayerwiseMiniCPMReranker,
            RerankerKind.LIGHTWEIGHT: LightweightGemma2Reranker}[kind]


class BGEReranker(ModelHandle):
    """Scores (query, passage) pairs with a BGE reranker; higher means more relevant.

    Args:
        model_name_or_path: hub id or local directory (default ``BAAI/bge-reranker-v2-m3``).
        kind: ``"encoder"``, ``"llm"``, ``"layerwise"`` or ``"lightweight"``; needed only for a
            model that is not in the reranker registry.
        device: ``"auto"``, ``"cpu"``, ``"cuda:0"``, ...
        dtype: ``"auto"``, ``"float32"``, ``"float16"``, ``"bfloat16"`` or ``"int8"``.
        batch_size: most pairs per forward pass.
        max_batch_tokens: most padded tokens per forward pass (``None``: per-device default).
        max_length: token limit of a pair (the passage is cut to fit).
        query_max_length: token limit of the query (``None``: ``max_length * 3 // 4``).
        normalize: sigmoid of the scores (0..1) instead of raw logits.
        prompt: the LLM kinds' task prompt (``None``: FlagEmbedding's default).
        cutoff_layers: layerwise / lightweight: the layers to score at (``None``: the last).
            Several layers give one row of scores per layer.
        compress_ratio: lightweight: average passage tokens in groups of 1, 2, 4 or 8.
        compress_layers: lightweight: layers before which the passage is compressed.
        query_instruction: text before every query (``None``: the registry's; ``""``: none).
        passage_instruction: text before every passage (``None``: the registry's; ``""``: none).
        backend: what runs the model: ``"torch"``; for encoder rerankers (cross-encoders of
            the XLM-RoBERTa / RoBERTa family) also ``"onnx"`` or ``"openvino"`` (CPU, float32 or
            int8: the backbone runs on the runtime, the classifier in torch) or ``"auto"``
            (the fastest measured; other kinds then use torch). See docs/backends.md.
        trust_remote_code: allow the checkpoint's own code (jina / gte rerankers need it).
        show_progress: tqdm progress bar.
        num_workers: CPU batches run side by side (``None``: the engine's default).

    Example:
        >>> rr = BGEReranker("BAAI/bge-reranker-v2-m3")  # doctest: +SKIP
        >>> rr.compute_score([("what is a panda?", "The giant panda is a bear.")])  # doctest: +SKIP
        array([5.26], dtype=float32)
        >>> rr.rerank("what is a panda?", ["hi", "The giant panda is a bear."])  # doctest: +SKIP
        [(1, 5.26...), (0, -8.1...)]
    """

    def __init__(self, model_name_or_path: str | os.PathLike[str] = DEFAULT_RERANKER, *,
                 kind: str | None = None, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 128, max_batch_tokens: int | None = None,
                 max_length: int = 512, query_max_length: int | None = None,
                 normalize: bool = False, prompt: str | None = None,
                 cutoff_layers: int | Sequence[int] | None = None,
                 compress_ratio: int | None = None,
                 compress_layers: Sequence[int] | None = None,
                 query_instruction: str | None = None, passage_instruction: str | None = None,
                 backend: str = "torch", trust_remote_code: bool = False,
                 show_progress: bool = False, num_workers: int | None = None) -> None:
        backend = check_backend(backend)
        self.model_name = os.fspath(model_name_or_path)
        spec = get_reranker(self.model_name, kind)
        changes = {k: v for k, v in (("query_instruction", query_instruction),
                                     ("passage_instruction", passage_instruction),
                                     ("prompt", prompt), ("compress_ratio", compress_ratio),
                                     ("compress_layers", compress_layers)) if v is not None}
        spec = spec.replace(**changes) if changes else spec
        if spec.trust_remote_code and not trust_remote_code:
            msg = (f"Reranker {self.model_name!r} needs its own modelling code. Remote code is "
                   "off by default; pass trust_remote_code=True if you trust its source.")
            raise ValueError(msg)
        self._spec = spec
        if spec.kind is not RerankerKind.ENCODER and backend in ("onnx", "openvino"):
            msg = (f"backend={backend!r} runs encoder rerankers (cross-encoders); "
                   f"{self.model_name!r} is a {spec.kind.value!r} reranker. Use "
                   "backend='torch'.")
            raise ValueError(msg)
        if spec.kind is not RerankerKind.ENCODER:
            backend = "torch"  # "auto" among what this kind can run on
        self.max_length = _positive(max_length, "max_length")
        self.query_max_length = optional_positive_int(query_max_length, "query_max_length")
        self.normalize = bool(normalize)
        self._loaded: LoadedModel = load_model(self.model_name, device=device, dtype=dtype,
                                               trust_remote_code=trust_remote_code,
                                               model_class=_model_class(spec.kind),
                                               backend=backend, show_progress=show_progress)
        self.backend = self._loaded.backend
        if spec.kind is RerankerKind.LIGHTWEIGHT:
            self._loaded.tokenizer.padding_side = "right"  # compression needs right padding
        self._engine = Engine(self._loaded, batch_size=batch_size,
                              max_batch_tokens=max_batch_tokens, show_progress=show_progress,
                              num_workers=num_workers,
                              padding_side=getattr(self._loaded.tokenizer, "padding_side",
                                                   "right") or "right",
                              progress_label="Reranking")
        self._check_model()
        self.cutoff_layers = self._layers(cutoff_layers if cutoff_layers is not None
                                          else spec.cutoff_layers)

    # -- properties ----------------------------------------------------------------------------
    @property
    def spec(self) -> RerankerSpec:
        """The effective registry row (with your overrides)."""
        return self._spec

    @property
    def kind(self) -> RerankerKind:
        return self._spec.kind

    @property
    def score_layers(self) -> list[int] | None:
        """Layers with a score head (layerwise / lightweight; ``None`` for other kinds)."""
        if self.kind in (RerankerKind.LAYERWISE, RerankerKind.LIGHTWEIGHT):
            return list(self._loaded.model.valid_layers)
        return None

    # -- public API ------------------------------------------------------------------------------
    def compute_score(self, pairs: Sequence[tuple[str, str]] | tuple[str, str], *,
                      normalize: bool | None = None, max_length: int | None = None,
                      query_max_length: int | None = None, prompt: str | None = None,
                      cutoff_layers: int | Sequence[int] | None = None) -> np.ndarray:
        """One float32 score per pair, in input order.

        ``pairs`` is a list of ``(query, passage)``; one ``(query, passage)`` tuple counts as a
        list of one and gives a 1-element array. With several ``cutoff_layers`` the result is
        ``(len(cutoff_layers), n)``: one row per layer, layers ascending. ``[]`` gives an empty
        array. Keywords override the constructor's for this call.
        """
        if (isinstance(pairs, tuple) and len(pairs) == 2
                and all(isinstance(s, str) for s in pairs)):
            pairs = [pairs]
        items = validate_pairs(pairs)
        layers = self.cutoff_layers if cutoff_layers is None else self._layers(cutoff_layers)
        n_layers = 1 if layers is None else len(layers)
        if not items:
            return np.zeros((0,) if n_layers == 1 else (n_layers, 0), dtype=np.float32)
        limit = _positive(max_length, "max_length") if max_length is not None \
            else self.max_length
        q_limit = (optional_positive_int(query_max_length, "query_max_length")
                   or self.query_max_length or limit * 3 // 4)
        queries = [self._with(self._spec.query_instruction, q) for q, _ in items]
        passages = [self._with(self._spec.passage_instruction, p) for _, p in items]
        rows, model_call = self._engine.call_tokenizer(
            lambda tok: self._rows(tok, queries, passages, limit, q_limit, prompt, layers))
        out = self._engine.run(rows, _rows_head, model_call=model_call)
        scores = np.stack(out).T.astype(np.float64)  # (layers, n)
        if self.normalize if normalize is None else normalize:
            scores = 1.0 / (1.0 + np.exp(-scores))
        scores = scores.astype(np.float32)
        return scores[0] if n_layers == 1 else scores

    def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None
               ) -> list[tuple[int, float]]:
        """``(index, score)`` of the best ``top_n`` documents (all when ``None``), best first.

        With several cutoff layers the last (deepest) layer's score ranks.
        """
        if not isinstance(query, str):
            msg = f"query must be a str, got {type(query).__name__}."
            raise TypeError(msg)
        docs = validate_texts(documents, name="documents")
        top_n = _top_n(top_n)
        if not docs:
            return []
        scores = self.compute_score([(query, d) for d in docs])
        if scores.ndim == 2:
            scores = scores[-1]
        order = sorted(range(len(docs)), key=lambda i: (-float(scores[i]), i))
        return [(i, float(scores[i])) for i in order[:top_n]]

    # -- internals ------------------------------------------------------------------------------
    @staticmethod
    def _with(instruction: str | None, text: str) -> str:
        return f"{instruction}{text}" if instruction else text

    def _check_model(self) -> None:
        config = self._loaded.config
        if self.kind is RerankerKind.ENCODER and getattr(config, "num_labels", 1) != 1:
            msg = (f"{self.model_name!r} has {config.num_labels} output labels; a cross-encoder "
                   "reranker has one (its score).")
            raise ValueError(msg)
        if self.kind is RerankerKind.LLM:
            self._yes = self._engine.call_tokenizer(
                lambda tok: tok("Yes", add_special_tokens=False)["input_ids"][0])

    def _layers(self, value: int | Sequence[int] | None) -> tuple[int, ...] | None:
        if self.kind not in (RerankerKind.LAYERWISE, RerankerKind.LIGHTWEIGHT):
            if value is not None:
                msg = (f"cutoff_layers apply to layerwise and lightweight rerankers; "
                       f"{self.model_name!r} is kind {self.kind.value!r}.")
                raise ValueError(msg)
            return None
        valid = self._loaded.model.valid_layers
        if value is None:
            return (valid[-1],)
        layers = [value] if isinstance(value, int) else list(value)
        bad = [x for x in layers if not isinstance(x, int) or isinstance(x, bool)
               or x not in valid]
        if not layers or bad:
            msg = (f"cutoff_layers must be layers with a score head, one of {valid}; got "
                   f"{value!r}.")
            raise ValueError(msg)
        return tuple(sorted(set(layers)))

    def _rows(self, tok: Any, queries: list[str], passages: list[str], limit: int,
              q_limit: int, prompt: str | None, layers: tuple[int, ...] | None
              ) -> tuple[list[list[int]], ModelCall]:
        unique = list(dict.fromkeys(queries))
        q_ids = dict(zip(unique, tokenize_sides(tok, unique, q_limit), strict=False))
        p_ids = tokenize_sides(tok, passages, limit)
        side = getattr(tok, "truncation_side", "right")
        if self.kind is RerankerKind.ENCODER:
            return self._encoder_rows(tok, [q_ids[q] for q in queries], p_ids, limit, side)
        default = LIGHTWEIGHT_PROMPT if self.kind is RerankerKind.LIGHTWEIGHT else LLM_PROMPT
        text = prompt if prompt is not None else (self._spec.prompt or default)
        bos = tok.bos_token_id
        keep_bos = bos is not None and (self.kind is not RerankerKind.LLM
                                        or bos != tok.pad_token_id)
        parts = PromptParts(bos=(bos,) if keep_bos else (),
                            sep=tuple(tok("\n", add_special_tokens=False)["input_ids"]),
                            prompt=tuple(tok(text, add_special_tokens=False)["input_ids"]))
        built = [llm_pair_ids(q_ids[q], p, parts, limit, side)
                 for q, p in zip(queries, p_ids, strict=True)]
        rows = [r for r, _ in built]
        if self.kind is RerankerKind.LLM:
            return rows, self._llm_call
        layers = layers or ()
        if self.kind is RerankerKind.LAYERWISE:
            return rows, lambda loaded, ids, mask, _pos: loaded.model.score(ids, mask, layers)
        q_lens = torch.tensor([q for _, q in built])
        p_len = len(parts.sep) + len(parts.prompt)
        ratio, at = self._spec.compress_ratio, self._spec.compress_layers

        def lightweight(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor,
                        pos: np.ndarray) -> torch.Tensor:
            q = q_lens[torch.from_numpy(np.asarray(pos))].to(ids.device)
            return loaded.model.score(ids, mask, layers, compress_ratio=ratio,
                                      compress_layers=at, query_lengths=q,
                                      prompt_lengths=torch.full_like(q, p_len))

        return rows, lightweight

    def _encoder_rows(self, tok: Any, q_ids: list[list[int]], p_ids: list[list[int]],
                      limit: int, side: str) -> tuple[list[list[int]], ModelCall]:
        template = self._loaded.extra("rerank_pair_template", lambda: pair_template(tok))
        cut = [truncate_second(q, p, limit, template.special_count, side)
               for q, p in zip(q_ids, p_ids, strict=False)]
        rows = [template.build(q, p) for q, p in zip(q_ids, cut, strict=False)]
        if template.types is None:
            return rows, _encoder_call
        types = [template.token_types(len(q), len(p)) for q, p in zip(q_ids, cut, strict=False)]
        left = getattr(tok, "padding_side", "right") == "left"

        def typed(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor,
                  pos: np.ndarray) -> torch.Tensor:
            width = ids.shape[1]
            tt = torch.zeros_like(ids)
            for row, i in enumerate(pos):
                t = torch.tensor(types[i], dtype=ids.dtype, device=ids.device)
                if left:
                    tt[row, width - len(t):] = t
                else:
                    tt[row, :len(t)] = t
            out = loaded.model(input_ids=ids, attention_mask=mask, token_type_ids=tt)
            return out.logits.view(1, -1).float()

        return rows, typed

    def _llm_call(self, loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor,
                  _pos: np.ndarray) -> torch.Tensor:
        model = loaded.model
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        last = hidden[torch.arange(ids.shape[0], device=ids.device), last_positions(mask)]
        head = model.get_output_embeddings()
        if isinstance(head, torch.nn.Linear):
            bias = None if head.bias is None else head.bias[self._yes:self._yes + 1]
            logit = F.linear(last, head.weight[self._yes:self._yes + 1], bias)[:, 0]
        else:
            logit = head(last)[:, self._yes]
        cap = getattr(model.config, "final_logit_softcapping", None)
        if cap is not None:
            logit = torch.tanh(logit / cap) * cap
        return logit.float()[None]


def _encoder_call(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor,
                  _pos: np.ndarray) -> torch.Tensor:
    """Cross-encoder logits ``(1, batch)``: RoBERTa-family classifiers read the first token
    only, so their backbone runs the lean pass with the last layer for that token alone."""
    if loaded.head is not None:  # a runtime backend runs the backbone, the classifier is ours
        hidden = loaded.backbone(ids, mask, first_token_only=True)
        return loaded.head(hidden).view(1, -1).float()
    model = loaded.model
    lean = loaded.extra("rerank_lean", lambda: lean_encoder(model.base_model) if type(
        model).__name__ in _LEAN_CLASSIFIERS else None)
    if lean is not None:
        logits = model.classifier(lean(ids, mask, first_token_only=True))
    else:
        logits = model(input_ids=ids, attention_mask=mask).logits
    return logits.view(1, -1).float()


def _rows_head(scores: torch.Tensor, _ids: torch.Tensor, _mask: torch.Tensor
               ) -> list[np.ndarray]:
    """``(layers, batch)`` scores -> one ``(layers,)`` array per row."""
    return list(scores.detach().cpu().numpy().T)


def _positive(value: object, name: str) -> int:
    checked = optional_positive_int(value, name)
    if checked is None:
        msg = f"{name} must be a positive int, got None."
        raise ValueError(msg)
    return checked


def _top_n(top_n: object) -> int | None:
    if top_n is None:
        return None
    if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
        msg = f"top_n must be a positive int (1 or more) or None for all, got {top_n!r}."
        raise ValueError(msg)
    return top_n
