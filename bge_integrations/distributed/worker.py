"""The Ray actor behind :func:`~.embed.embed_dataset`: one model per actor, the core per batch.

An :class:`EmbedWorker` loads the model once, when Ray starts the actor, and then turns each
Arrow batch it is handed into the same batch with the output columns appended. All inference
goes through the core embedders (``encode_documents`` / ``encode_queries``), so a row's outputs
are exactly what one process gives for the same text, whatever batch it lands in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..core.embedder import BGEEmbedder
from ..core.m3 import BGEM3Embedder
from . import columns as C
from .actors import screen_rows

__all__ = ["EmbedWorker", "Outputs"]

#: TESTS ONLY, not an option: "<marker file>:<n>" makes an actor exit on its n-th batch, once
#: (the marker file is created atomically first; a restarted actor finds it and carries on)
_CRASH_ONCE_ENV = "_BGE_INTEGRATIONS_TEST_CRASH_ONCE"
_FLOAT_DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclass(frozen=True)
class Outputs:
    """What the workers compute and how they lay it out.

    Attributes:
        m3: the model is BGE-M3 (``BGEM3Embedder``), else a dense ``BGEEmbedder``.
        side: ``"document"`` or ``"query"``.
        dense: add ``embedding``.
        sparse: add ``sparse_indices`` / ``sparse_values`` (BGE-M3 only).
        colbert: add ``colbert`` (BGE-M3 only).
        output_dtype: ``"float32"`` or ``"float16"`` for dense and ColBERT vectors.
        token_counts: add ``num_tokens``.
        collect_errors: a bad row gets an ``error`` instead of failing the job.
    """

    m3: bool
    side: str = "document"
    dense: bool = True
    sparse: bool = False
    colbert: bool = False
    output_dtype: str = "float32"
    token_counts: bool = False
    collect_errors: bool = False


class EmbedWorker:
    """Ray Data callable class: ``pa.Table`` batch in, the same batch plus output columns out.

    Args:
        model: hub id or local directory, loaded once per actor.
        outputs: what to compute.
        column: the text column.
        id_column: the column that names a row in error messages (row position if absent).
        core_options: keyword options of the core embedder (``device``, ``dtype``, ...).

    Example:
        >>> worker = EmbedWorker("BAAI/bge-small-en-v1.5", Outputs(m3=False))  # doctest: +SKIP
        >>> worker(pa.table({"text": ["a", "b"]})).column_names  # doctest: +SKIP
        ['text', 'embedding']
    """

    def __init__(self, model: str, outputs: Outputs, *, column: str = "text",
                 id_column: str = "id", core_options: Mapping[str, Any] | None = None) -> None:
        cls = BGEM3Embedder if outputs.m3 else BGEEmbedder
        self._embedder = cls(model, **dict(core_options or {}))
        self._outputs = outputs
        self._column = column
        self._id_column = id_column
        self._dtype = np.dtype(_FLOAT_DTYPES[outputs.output_dtype])
        self._batches = 0
        self._crash_once = os.environ.get(_CRASH_ONCE_ENV)

    def __call__(self, batch: pa.Table) -> pa.Table:
        self._batches += 1
        if self._crash_once:
            self._maybe_crash()
        if self._column not in batch.column_names:
            msg = (f"this batch has no {self._column!r} column (columns: "
                   f"{', '.join(batch.column_names)}).")
            raise ValueError(msg)
        good, errors = screen_rows(batch, [self._column], self._id_column,
                                   self._outputs.collect_errors)
        texts = batch.column(self._column).to_pylist()
        for name, column in self._columns([texts[i] for i in good], good, len(texts)):
            batch = batch.append_column(name, column)
        if self._outputs.collect_errors:
            batch = batch.append_column(C.ERROR, pa.array(errors, type=pa.string()))
        return batch

    def _maybe_crash(self) -> None:
        marker, _, nth = self._crash_once.rpartition(":")
        if self._batches != int(nth):
            return
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os._exit(1)

    def _columns(self, texts: list[str], rows: Sequence[int], n: int
                 ) -> list[tuple[str, pa.Array]]:
        """The output columns for ``n`` rows, of which ``rows`` (holding ``texts``) are valid."""
        out = self._outputs
        valid = np.zeros(n, dtype=bool)
        valid[list(rows)] = True
        dim = self._embedder.dim
        dense = np.zeros((n, dim), self._dtype)
        sparse: list[Any] = [None] * n
        colbert: list[Any] = [None] * n
        encoded = self._encode(texts) if texts else None
        if encoded is not None:
            if out.m3:
                if out.dense:
                    dense[list(rows)] = encoded.dense
                for target, part in ((sparse, encoded.sparse), (colbert, encoded.colbert)):
                    for row, value in zip(rows, part or (), strict=False):
                        target[row] = value
            else:
                dense[list(rows)] = encoded
        result = []
        if out.dense:
            result.append((C.EMBEDDING, C.dense_column(dense, valid)))
        if out.sparse:
            result.extend(zip((C.SPARSE_INDICES, C.SPARSE_VALUES), C.sparse_columns(sparse),
                              strict=True))
        if out.colbert:
            result.append((C.COLBERT, C.colbert_column(colbert, dim, self._dtype)))
        if out.token_counts:
            counts = np.zeros(n, np.int32)
            counts[list(rows)] = self._count_tokens(texts)
            result.append((C.NUM_TOKENS, pa.array(counts, mask=~valid)))
        return result

    def _encode(self, texts: list[str]) -> Any:
        out, emb = self._outputs, self._embedder
        if out.m3:
            encode = emb.encode_queries if out.side == "query" else emb.encode_documents
            return encode(texts, dense=out.dense, sparse=out.sparse, colbert=out.colbert)
        if out.side == "query":
            return emb.encode_queries(texts, output_dtype=out.output_dtype)
        return emb.encode_documents(texts, output_dtype=out.output_dtype)

    def _count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text feeds the model after truncation (the ICL prefix not counted)."""
        emb = self._embedder
        if self._outputs.side == "query":
            limit = emb.query_max_length
            texts = texts if self._outputs.m3 else emb.query_texts(texts)
        else:
            limit = emb.passage_max_length
            texts = texts if self._outputs.m3 else emb.document_texts(texts)
        ids = emb.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]
        return [len(i) for i in ids]
