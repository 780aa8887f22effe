"""write_index: load an embedded Ray Dataset into a HybridIndex or DenseIndex, no re-embedding.

The rows stream to this process batch by batch and go in through the index's
``add_embeddings`` (the same validation and all-or-nothing guarantee per call as ``add``),
so an index of millions of documents is built from vectors computed on a cluster. Ids come
from the id column: a rerun after an interruption upserts the same documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..retrieval import DenseIndex, HybridIndex
from . import columns as C
from ._ray import require_ray
from .actors import dataset_columns
from .qdrant_sink import WriteSummary

if TYPE_CHECKING:
    import ray.data

__all__ = ["write_index"]

#: the first row's stored vector and a fresh encoding of its text must agree this well
#: (float16 outputs and another device's float32 rounding stay far above it)
SPOT_CHECK_MIN_COSINE = 0.99


def _columns(index: Any, names: list[str], id_column: str, text_column: str,
             metadata_columns: Sequence[str] | None) -> list[str]:
    hybrid = isinstance(index, HybridIndex)
    needed = [id_column, text_column, C.EMBEDDING]
    if hybrid:
        needed += [C.SPARSE_INDICES, C.SPARSE_VALUES]
        if index.store_colbert:
            needed.append(C.COLBERT)
    missing = [n for n in needed if n not in names]
    if missing:
        hint = (" (embed with colbert=True, or use an index with store_colbert=False)"
                if C.COLBERT in missing else "")
        msg = (f"the dataset has no {', '.join(map(repr, missing))} column(s) for this "
               f"{type(index).__name__}{hint}; its columns are: {', '.join(names)}.")
        raise ValueError(msg)
    return C.metadata_names(names, id_column, text_column, metadata_columns)


def _spot_check(index: Any, text: str, vector: np.ndarray) -> None:
    """Refuse vectors that another model made: re-encode one text with the index's model."""
    if isinstance(index, HybridIndex):
        fresh = index.m3.encode_documents([text], dense=True, sparse=False).dense[0]
    else:
        fresh = index.embedder.encode_documents([text])[0]
    vector = vector.astype(np.float64)
    cosine = float(fresh @ vector) / (float(np.linalg.norm(fresh) * np.linalg.norm(vector))
                                      or 1.0)
    if fresh.shape != vector.shape or cosine < SPOT_CHECK_MIN_COSINE:
        msg = (f"the dataset's embeddings were not made by this index's model (the first "
               f"row's vector and a fresh encoding of its text differ: cosine {cosine:.3f}); "
               "embed with the index's model, or load into an index of the model you used.")
        raise ValueError(msg)


def _add(index: Any, batch: pa.Table, id_column: str, text_column: str,
         metadata_columns: list[str]) -> list[str]:
    texts = batch.column(text_column).to_pylist()
    ids = C.row_ids(batch, id_column)
    metadatas = batch.select(metadata_columns).to_pylist()
    dense = C.dense_matrix(batch.column(C.EMBEDDING))
    if isinstance(index, DenseIndex):
        return index.add_embeddings(texts, dense, metadatas=metadatas, ids=ids)
    colbert = C.colbert_arrays(batch.column(C.COLBERT)) if index.store_colbert else None
    return index.add_embeddings(
        texts, dense=dense,
        sparse=C.sparse_dicts(batch.column(C.SPARSE_INDICES), batch.column(C.SPARSE_VALUES)),
        colbert=colbert, metadatas=metadatas, ids=ids)


def write_index(ds: ray.data.Dataset, index: HybridIndex | DenseIndex, *,
                id_column: str = "id", text_column: str = "text",
                metadata_columns: Sequence[str] | None = None,
                batch_size: int = 1024) -> WriteSummary:
    """Add an embedded dataset to an index with ``add_embeddings`` (no model call per row).

    A :class:`~bge_integrations.HybridIndex` needs the dense and sparse columns (and
    ``colbert`` when it stores ColBERT vectors); a :class:`~bge_integrations.DenseIndex`
    needs ``embedding``. Before the first add, the first row's text is encoded with the
    index's model and compared with its stored vector, so vectors from another model are
    refused before anything is added.

    Args:
        ds: a dataset embedded by :func:`~.embed.embed_dataset` with the index's model.
        index: the index to fill (in this process; save it afterwards).
        id_column: the column of unique ids (str or int).
        text_column: the text column.
        metadata_columns: metadata columns (default: every other input column).
        batch_size: rows per ``add_embeddings`` call.

    Returns:
        :class:`~.qdrant_sink.WriteSummary`: rows added, tokens when ``ds`` has ``num_tokens``.

    Example:
        >>> index = HybridIndex(BGEM3Embedder("BAAI/bge-m3"))  # doctest: +SKIP
        >>> write_index(embed_dataset(ds, "BAAI/bge-m3", colbert=True), index)  # doctest: +SKIP
        WriteSummary(rows=1000, tokens=None)
        >>> index.save("my-index")  # doctest: +SKIP
    """
    require_ray()
    if not isinstance(index, HybridIndex | DenseIndex):
        msg = (f"index must be a HybridIndex or a DenseIndex, got {type(index).__name__}; for "
               "Qdrant use write_qdrant.")
        raise TypeError(msg)
    names = dataset_columns(ds)
    metadata = _columns(index, names, id_column, text_column, metadata_columns)
    rows, tokens, checked = 0, 0, False
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
        C.refuse_unembedded(batch)
        if not checked and len(batch):
            _spot_check(index, batch.column(text_column)[0].as_py(),
                        C.dense_matrix(batch.column(C.EMBEDDING).slice(0, 1))[0])
            checked = True
        rows += len(_add(index, batch, id_column, text_column, metadata))
        tokens += C.token_total(batch) or 0
    return WriteSummary(rows=rows, tokens=tokens if C.NUM_TOKENS in names else None)
