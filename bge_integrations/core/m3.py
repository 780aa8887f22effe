"""BGEM3Embedder: dense, sparse (lexical) and ColBERT outputs of BGE-M3 from one forward pass."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .checkpoint import read_config
from .embedder import EncoderBase
from .loading import TORCH_DTYPES
from .m3_heads import HEAD_FILES, check_vocabulary, load_head, missing_heads_message
from .registry import Family, resolve_spec
from .scores import (
    DEFAULT_WEIGHTS,
    SparseVector,
    check_weights,
    colbert_scores,
    combine_scores,
    dense_scores,
    lexical_scores,
    sparse_to_arrays,
    sparse_to_csr,
)

__all__ = ["BGEM3Embedder", "M3Output", "HEAD_FILES"]

@dataclass
class M3Output:
    """What :meth:`BGEM3Embedder.encode` returns; fields not requested are ``None``.

    Attributes:
        dense: ``(n, dim)`` float32, L2-normalized CLS vectors.
        sparse: per text, token id -> weight (only weights > 0).
        colbert: per text, ``(n_tokens - 1, dim)`` float32 L2-normalized token vectors.
    """

    dense: np.ndarray | None = None
    sparse: list[dict[int, float]] | None = None
    colbert: list[np.ndarray] | None = None

    def __len__(self) -> int:
        for part in (self.dense, self.sparse, self.colbert):
            if part is not None:
                return len(part)
        return 0

    def sparse_csr(self, vocab_size: int) -> sp.csr_matrix:
        """The sparse output as a ``(n, vocab_size)`` CSR matrix."""
        return sparse_to_csr(self._require("sparse"), vocab_size)

    def sparse_arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The sparse output as ``(indices, values)`` pairs (Qdrant / Milvus sparse vectors)."""
        return [sparse_to_arrays(v) for v in self._require("sparse")]

    def _require(self, name: str) -> list[dict[int, float]]:
        value = getattr(self, name)
        if value is None:
            msg = f"this output has no {name} part; encode with {name}=True."
            raise ValueError(msg)
        return value


class BGEM3Embedder(EncoderBase):
    """BGE-M3's three representations from one forward pass, and their scores.

    Only the requested heads run. Sparse: ``relu(sparse_linear(h))`` per token, special tokens
    dropped, max over repeats. ColBERT: ``colbert_linear(h[:, 1:])``, L2-normalized, one vector
    per token after CLS. ``backend`` (see :class:`BGEEmbedder`) runs the backbone; the heads
    run in torch on its output. A checkpoint with neither ``colbert_linear.pt`` nor
    ``sparse_linear.pt`` is not BGE-M3 and is refused at construction. Each head loads when
    first requested, one copy per device (:mod:`.m3_heads`: shapes checked against the
    backbone before anything is built); a missing or damaged file is an error, never random
    weights.

    Example:
        >>> m3 = BGEM3Embedder("BAAI/bge-m3")  # doctest: +SKIP
        >>> out = m3.encode_documents(["BGE-M3 is multilingual."], colbert=True)  # doctest: +SKIP
        >>> out.dense.shape, len(out.sparse), out.colbert[0].shape[1]  # doctest: +SKIP
        ((1, 1024), 1, 1024)
    """

    def __init__(self, model_name_or_path: str = "BAAI/bge-m3", *,
                 device: str | Sequence[str] = "auto",
                 dtype: str = "auto", query_max_length: int | None = None,
                 passage_max_length: int | None = None, normalize: bool = True,
                 batch_size: int = 256, max_batch_tokens: int | None = None,
                 show_progress: bool = False, trust_remote_code: bool = False,
                 max_texts_per_call: int | None = None,
                 max_tokens_per_call: int | None = None,
                 num_workers: int | None = None, backend: str = "torch",
                 int8_calibration: Sequence[str] | None = None) -> None:
        spec = resolve_spec(model_name_or_path, family=Family.M3.value, pooling="cls",
                            max_length=8192)
        super().__init__(model_name_or_path, spec, device=device, dtype=dtype,
                         query_max_length=query_max_length,
                         passage_max_length=passage_max_length, normalize=normalize,
                         batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                         show_progress=show_progress, trust_remote_code=trust_remote_code,
                         max_texts_per_call=max_texts_per_call,
                         max_tokens_per_call=max_tokens_per_call, num_workers=num_workers,
                         backend=backend, int8_calibration=int8_calibration)
        if not any(os.path.isfile(os.path.join(self._loaded.path, f))
                   for f in HEAD_FILES.values()):
            raise FileNotFoundError(missing_heads_message(self._loaded.path, list(HEAD_FILES)))
        check_vocabulary(self._loaded.path, len(self._loaded.tokenizer),
                         read_config(self._loaded.path).get("vocab_size"))
        tok = self._loaded.tokenizer
        self._unused_ids = frozenset(
            int(i) for i in (tok.cls_token_id, tok.eos_token_id, tok.pad_token_id,
                             tok.unk_token_id) if i is not None)

    @property
    def vocab_size(self) -> int:
        """Size of the token id space of sparse vectors."""
        return len(self._loaded.tokenizer)

    def _device_heads(self, name: str) -> dict[torch.device, torch.nn.Linear]:
        """The ``name`` head on every device this embedder runs on, keyed by the device its
        weights live on: a batch's device finds its own copy. Each model loads it once (and
        checks it: :mod:`.m3_heads`), shared by every embedder on that model."""
        heads = [loaded.extra(f"m3:{name}", lambda loaded=loaded: load_head(
            loaded.path, name, loaded.hidden_size, loaded.device, TORCH_DTYPES[loaded.dtype]))
                 for loaded in (self._loaded, *self._engine.replicas)]
        return {head.weight.device: head for head in heads}

    # -- encoding ----------------------------------------------------------------------------
    def encode_queries(self, queries: Sequence[str], *, dense: bool = True, sparse: bool = True,
                       colbert: bool = False) -> M3Output:
        """Encode queries (BGE-M3 uses no query instruction) up to ``query_max_length``."""
        return self._encode(queries, "queries", self.query_max_length, dense, sparse, colbert)

    def encode_documents(self, documents: Sequence[str], *, dense: bool = True,
                         sparse: bool = True, colbert: bool = False) -> M3Output:
        """Encode passages up to ``passage_max_length`` tokens."""
        return self._encode(documents, "documents", self.passage_max_length, dense, sparse,
                            colbert)

    def encode(self, texts: Sequence[str], *, dense: bool = True, sparse: bool = True,
               colbert: bool = False, max_length: int | None = None) -> M3Output:
        """Encode texts up to ``max_length`` (default ``passage_max_length``) tokens."""
        return self._encode(texts, "texts", self._max_length(max_length), dense, sparse, colbert)

    def _encode(self, texts: Sequence[str], name: str, max_length: int, dense: bool,
                sparse: bool, colbert: bool) -> M3Output:
        texts = self._texts(texts, name)
        if not (dense or sparse or colbert):
            msg = "request at least one output: dense=True, sparse=True or colbert=True."
            raise ValueError(msg)
        # a missing or damaged head file fails here, before any work
        sparse_heads = self._device_heads("sparse") if sparse else {}
        colbert_heads = self._device_heads("colbert") if colbert else {}
        if not texts:
            return M3Output(
                dense=np.zeros((0, self.dim), np.float32) if dense else None,
                sparse=[] if sparse else None, colbert=[] if colbert else None)

        def head(hidden: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
                 ) -> list[tuple]:
            return self._heads(hidden, ids, mask, dense, sparse_heads.get(hidden.device),
                               colbert_heads.get(hidden.device))

        rows = self._run(self._tokenize(texts, max_length), head,
                         first_token_only=not (sparse or colbert), key=(dense, sparse, colbert))
        return M3Output(
            dense=np.stack([r[0] for r in rows]) if dense else None,
            sparse=[r[1] for r in rows] if sparse else None,
            colbert=[r[2] for r in rows] if colbert else None,
        )

    def _heads(self, hidden: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, dense: bool,
               sparse_head: torch.nn.Linear | None, colbert_head: torch.nn.Linear | None
               ) -> list[tuple]:
        n = hidden.shape[0]
        dense_rows: list = [None] * n
        sparse_rows: list = [None] * n
        colbert_rows: list = [None] * n
        if dense:
            vecs = hidden[:, 0].float()
            if self.normalize:
                vecs = F.normalize(vecs, dim=-1)
            dense_rows = list(vecs.cpu().numpy())
        if sparse_head is not None:
            weights = torch.relu(sparse_head(hidden)).squeeze(-1).float().cpu().numpy()
            sparse_rows = [self._lexical_weights(w, i, m) for w, i, m in
                           zip(weights, ids.cpu().numpy(), mask.cpu().numpy(), strict=False)]
        if colbert_head is not None:
            vecs = colbert_head(hidden[:, 1:]).float() * mask[:, 1:, None].float()
            if self.normalize:
                vecs = F.normalize(vecs, dim=-1)
            vecs_np = vecs.cpu().numpy()
            lengths = mask[:, 1:].sum(dim=1).cpu().numpy()
            colbert_rows = [v[:k] for v, k in zip(vecs_np, lengths, strict=False)]
        return list(zip(dense_rows, sparse_rows, colbert_rows, strict=False))

    def _lexical_weights(self, weights: np.ndarray, ids: np.ndarray, mask: np.ndarray
                         ) -> dict[int, float]:
        out: dict[int, float] = {}
        unused = self._unused_ids
        for w, tid, m in zip(weights.tolist(), ids.tolist(), mask.tolist(), strict=False):
            if m and w > 0 and tid not in unused and w > out.get(tid, 0.0):
                out[tid] = w
        return out

    def convert_to_tokens(self, sparse: SparseVector | Sequence[SparseVector]
                          ) -> dict[str, float] | list[dict[str, float]]:
        """Token id keys -> token strings (one dict, or a list of dicts)."""
        tok = self._loaded.tokenizer

        def one(vec: SparseVector) -> dict[str, float]:
            with self._loaded.tokenizer_lock:
                return {tok.decode([int(k)]): float(v) for k, v in vec.items()}

        if isinstance(sparse, Mapping):
            return one(sparse)
        return [one(v) for v in sparse]

    # -- scores ------------------------------------------------------------------------------
    @staticmethod
    def lexical_score(q_sparse: SparseVector | Sequence[SparseVector],
                      p_sparse: SparseVector | Sequence[SparseVector]) -> float | np.ndarray:
        """Sum of weight products over shared tokens; a matrix for lists of vectors."""
        if isinstance(q_sparse, Mapping) and isinstance(p_sparse, Mapping):
            return float(lexical_scores([q_sparse], [p_sparse])[0, 0])
        if isinstance(q_sparse, Mapping) or isinstance(p_sparse, Mapping):
            msg = "pass two sparse dicts, or two lists of sparse dicts."
            raise TypeError(msg)
        return lexical_scores(list(q_sparse), list(p_sparse))

    @staticmethod
    def colbert_score(q_vecs: np.ndarray | Sequence[np.ndarray],
                      p_vecs: np.ndarray | Sequence[np.ndarray]) -> float | np.ndarray:
        """Mean over query vectors of the max dot product with passage vectors.

        Two 2-D arrays give a float; two lists of 2-D arrays give a matrix.
        """
        if isinstance(q_vecs, np.ndarray) and isinstance(p_vecs, np.ndarray):
            return float(colbert_scores([q_vecs], [p_vecs])[0, 0])
        return colbert_scores(list(q_vecs), list(p_vecs))

    def compute_score(self, pairs: Sequence[tuple[str, str]] | tuple[str, str],
                      weights: Sequence[float] = DEFAULT_WEIGHTS
                      ) -> dict[str, float] | dict[str, list[float]]:
        """Scores of (query, passage) pairs, with FlagEmbedding's keys and meaning.

        Keys: ``dense``, ``sparse``, ``colbert``, ``sparse+dense``, ``colbert+sparse+dense``;
        ``weights`` are (dense, sparse, colbert). Each distinct text is encoded once.
        """
        single = isinstance(pairs, tuple) and len(pairs) == 2 and isinstance(pairs[0], str)
        pair_list = [pairs] if single else list(pairs)
        for i, pair in enumerate(pair_list):
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                msg = f"pairs[{i}] must be a (query, passage) pair, got {pair!r:.80}."
                raise TypeError(msg)
        check_weights(weights)
        queries = list(dict.fromkeys(p[0] for p in pair_list))
        passages = list(dict.fromkeys(p[1] for p in pair_list))
        q = self.encode_queries(queries, dense=True, sparse=True, colbert=True)
        p = self.encode_documents(passages, dense=True, sparse=True, colbert=True)
        q_pos = {t: i for i, t in enumerate(queries)}
        p_pos = {t: i for i, t in enumerate(passages)}
        qi = np.array([q_pos[a] for a, _ in pair_list], dtype=np.int64)
        pi = np.array([p_pos[b] for _, b in pair_list], dtype=np.int64)
        scores = self.score_outputs(q, p, weights)
        picked = {k: v[qi, pi].astype(float).tolist() for k, v in scores.items()}
        return {k: v[0] for k, v in picked.items()} if single else picked

    @staticmethod
    def score_outputs(queries: M3Output, passages: M3Output,
                      weights: Sequence[float] = DEFAULT_WEIGHTS) -> dict[str, np.ndarray]:
        """All five score matrices ``(n_queries, n_passages)`` from encoded outputs."""
        for side, out in (("queries", queries), ("passages", passages)):
            if out.dense is None or out.sparse is None or out.colbert is None:
                msg = f"{side} need dense, sparse and colbert outputs to compute every score."
                raise ValueError(msg)
        return combine_scores(
            dense_scores(queries.dense, passages.dense),
            lexical_scores(queries.sparse, passages.sparse),
            colbert_scores(queries.colbert, passages.colbert),
            weights,
        )
