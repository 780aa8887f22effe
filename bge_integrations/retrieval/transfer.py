"""copy_index: move an index's documents and vectors into another index, without re-embedding.

For a user who outgrows one machine (``HybridIndex`` -> ``QdrantHybridIndex``,
``DenseIndex`` -> ``QdrantDenseIndex``), for the way back, and between two indexes of one
kind: the source's ``iter_embeddings`` batches go into the target's ``add_embeddings``, so no
document passes through a model. Before anything is written the pair is checked:

* kind: both BGE-M3 (dense, sparse, ColBERT) or both dense, with the same dimension;
* ColBERT: a source without ColBERT vectors cannot fill a target that stores them (they would
  have to be computed). A source with them goes into a target without them only with
  ``drop_colbert=True``: nothing is dropped unless the caller says so;
* model: the first :data:`PROBE_DOCS` source documents are embedded again by the target's
  model and must match their stored dense vectors (cosine >= ``PROBE_MIN_COSINE``), and so
  must the target's own first documents; otherwise :class:`~.errors.ModelMismatchError`,
  naming both models.

Writes are upserts by id, one batch at a time, so a copy that fails midway can be run again.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .contract import EmbeddingBatch, check_batch_size
from .dense_base import DenseBase
from .errors import ModelMismatchError
from .identity import PROBE_MIN_COSINE
from .m3_index import M3Index

__all__ = ["copy_index", "PROBE_DOCS"]

#: documents re-embedded to check that source and target use the same model
PROBE_DOCS = 3


def _is_m3(index: object, role: str) -> bool:
    if isinstance(index, M3Index):
        return True
    if isinstance(index, DenseBase):
        return False
    msg = (f"copy_index copies between HybridIndex, QdrantHybridIndex, DenseIndex and "
           f"QdrantDenseIndex; got {type(index).__name__} as the {role}.")
    raise TypeError(msg)


def _model(index: Any) -> str:
    return str(getattr(index.embedder, "model_name", type(index.embedder).__name__))


def _check_pair(source: Any, target: Any, drop_colbert: bool) -> bool:
    """Whether the pair is BGE-M3; a ``TypeError`` / ``ValueError`` when it cannot be copied."""
    m3 = _is_m3(source, "source")
    if m3 != _is_m3(target, "target"):
        kinds = {True: "BGE-M3 (dense + sparse + ColBERT)", False: "dense-only"}
        fit = "QdrantHybridIndex or HybridIndex" if m3 else "QdrantDenseIndex or DenseIndex"
        msg = (f"cannot copy a {kinds[m3]} {type(source).__name__} into a {kinds[not m3]} "
               f"{type(target).__name__}: copy into a {fit} on {_model(source)!r}.")
        raise TypeError(msg)
    dims = int(source.embedder.dim), int(target.embedder.dim)
    if dims[0] != dims[1]:
        msg = (f"the source holds {dims[0]}-d vectors of {_model(source)!r}, the target's model "
               f"{_model(target)!r} makes {dims[1]}-d ones; copy into an index built on "
               f"{_model(source)!r}.")
        raise ModelMismatchError(msg)
    if m3 and target.store_colbert and not source.store_colbert:
        msg = ("the source stores no ColBERT vectors (store_colbert=False) but the target does; "
               "create the target with store_colbert=False (or rebuild the source with "
               "store_colbert=True).")
        raise ValueError(msg)
    if m3 and source.store_colbert and not target.store_colbert and not drop_colbert:
        msg = ("the source stores ColBERT vectors but the target does not (store_colbert="
               "False); pass drop_colbert=True to copy without them, or create the target with "
               "store_colbert=True.")
        raise ValueError(msg)
    return m3


def _mismatch(batch: EmbeddingBatch, target: Any, m3: bool) -> str | None:
    """How the target's model fails to embed the batch's first texts as they are stored, or
    ``None`` when it embeds them alike (cosine >= ``PROBE_MIN_COSINE``)."""
    texts = batch.texts[:PROBE_DOCS]
    embedder = target.embedder
    fresh = (embedder.encode_documents(texts, dense=True, sparse=False, colbert=False).dense
             if m3 else embedder.encode_documents(texts))
    mine = np.asarray(fresh, dtype=np.float64)
    stored = np.asarray(batch.dense[:len(texts)], dtype=np.float64)
    norms = np.linalg.norm(mine, axis=1) * np.linalg.norm(stored, axis=1)
    cosines = np.einsum("ij,ij->i", mine, stored) / np.maximum(norms, np.finfo(float).tiny)
    worst = int(np.argmin(cosines))
    if cosines[worst] >= PROBE_MIN_COSINE:
        return None
    return (f"the stored vector of {batch.ids[worst]!r} and {_model(target)!r}'s embedding of "
            f"its text have cosine {cosines[worst]:.3f} < {PROBE_MIN_COSINE}")


def copy_index(source: Any, target: Any, *, batch_size: int = 256,
               drop_colbert: bool = False) -> int:
    """Copy every document of ``source`` into ``target`` with its stored vectors (no re-embedding).

    Ids, texts, metadata and every vector (dense; for BGE-M3 also sparse and ColBERT) arrive
    as stored, so the target ranks like the source. Documents already in the target stay;
    those with a copied id are replaced (upsert).

    Args:
        source: a ``HybridIndex``, ``QdrantHybridIndex``, ``DenseIndex`` or ``QdrantDenseIndex``.
        target: an index of the same kind (BGE-M3 or dense) on the same model.
        batch_size: documents read and written per step.
        drop_colbert: allow a source with ColBERT vectors into a target without them (the
            vectors are left behind).

    Returns:
        How many documents were copied (0 for an empty source).

    Raises:
        TypeError: the indexes are of different kinds.
        ModelMismatchError: the dimensions differ, or the target's model does not embed the
            source's documents (or the target's own) as they are stored; nothing is written.
        ValueError: the ColBERT settings do not fit (the message names the fix).

    Example:
        >>> from bge_integrations.retrieval import QdrantHybridIndex, copy_index
        >>> remote = QdrantHybridIndex(index.m3, url="http://localhost:6333")  # doctest: +SKIP
        >>> copy_index(index, remote)  # doctest: +SKIP
        1200
    """
    size = check_batch_size(batch_size)
    m3 = _check_pair(source, target, drop_colbert)
    batches = source.iter_embeddings(size)
    first = next(batches, None)
    if first is None:
        return 0
    problem = _mismatch(first, target, m3)
    if problem:
        msg = (f"the source's documents were embedded by another model than the target's "
               f"(source model {_model(source)!r}, target model {_model(target)!r}): {problem}. "
               "Copy into an index built on the source's model; nothing was written.")
        raise ModelMismatchError(msg)
    own = next(target.iter_embeddings(PROBE_DOCS), None)
    problem = None if own is None else _mismatch(own, target, m3)
    if problem:
        msg = (f"the target already holds documents of another model than its own "
               f"{_model(target)!r} (the source's is {_model(source)!r}): {problem}. Copy into "
               "another collection or an empty index; nothing was written.")
        raise ModelMismatchError(msg)
    keep_colbert = m3 and target.store_colbert
    copied = 0
    for batch in itertools.chain([first], batches):
        if m3:
            target.add_embeddings(batch.texts, dense=batch.dense, sparse=batch.sparse,
                                  colbert=batch.colbert if keep_colbert else None,
                                  metadatas=batch.metadatas, ids=batch.ids)
        else:
            target.add_embeddings(batch.texts, batch.dense, metadatas=batch.metadatas,
                                  ids=batch.ids)
        copied += len(batch)
    return copied
