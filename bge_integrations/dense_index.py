"""DenseIndex: exact dense-vector search for any non-M3 model, saved as .npy + JSON (no pickle).

For BGE-M3 use :class:`bge_integrations.retrieval.HybridIndex`, which adds sparse and ColBERT
scores; this index is the dense-only counterpart with the same ``add / delete / search /
save / load`` shape, the same :class:`Hit` results and the same metadata filter language.

Example:
    >>> from bge_integrations import BGEEmbedder
    >>> from bge_integrations.dense_index import DenseIndex
    >>> index = DenseIndex(BGEEmbedder("BAAI/bge-small-en-v1.5"))  # doctest: +SKIP
    >>> index.add(["Paris is in France."], metadatas=[{"lang": "en"}])  # doctest: +SKIP
    >>> index.search("capital of France", k=1, filter={"lang": "en"})[0].score  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .core.embedder import BGEEmbedder
from .retrieval.contract import DocBatch, Hit, validate_ids
from .retrieval.filters import filter_mask, parse_filter
from .retrieval.fusion import top_k

__all__ = ["DenseIndex", "INDEX_FILE", "VECTORS_FILE"]

INDEX_FILE = "dense_index.json"
VECTORS_FILE = "vectors.npy"
_FORMAT = 1


class DenseIndex:
    """Documents, their embeddings and metadata in memory; exact inner-product search.

    Args:
        embedder: embeds documents (``encode_documents``) and queries (``encode_queries``).
    """

    def __init__(self, embedder: BGEEmbedder) -> None:
        if not isinstance(embedder, BGEEmbedder):
            msg = f"DenseIndex needs a BGEEmbedder, got {type(embedder).__name__}."
            raise TypeError(msg)
        self._embedder = embedder
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._metadatas: list[dict[str, Any]] = []
        self._vectors = np.zeros((0, embedder.dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def embedder(self) -> BGEEmbedder:
        """The embedder that encodes documents and queries."""
        return self._embedder

    def add(self, texts: Sequence[str], metadatas: Sequence[Mapping[str, Any]] | None = None,
            ids: Sequence[str] | None = None) -> list[str]:
        """Embed and store ``texts``, replacing documents whose id exists (upsert).

        Returns:
            The ids, in input order (random hex ids when not given).

        Raises:
            ValueError: lengths differ, an id is invalid or repeats, or metadata is not JSON.
                Nothing changes then.
        """
        batch = DocBatch.build(texts, metadatas, ids)
        vectors = self._embedder.encode_documents(batch.texts)
        self.delete(batch.ids)
        self._ids += batch.ids
        self._texts += batch.texts
        self._metadatas += batch.metadatas
        self._vectors = np.concatenate([self._vectors, vectors])
        return list(batch.ids)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; unknown ids are ignored. Returns how many were removed."""
        drop = set(validate_ids(ids)) & set(self._ids)
        if drop:
            keep = [i for i, doc_id in enumerate(self._ids) if doc_id not in drop]
            self._ids = [self._ids[i] for i in keep]
            self._texts = [self._texts[i] for i in keep]
            self._metadatas = [self._metadatas[i] for i in keep]
            self._vectors = self._vectors[keep]
        return len(drop)

    def search(self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None
               ) -> list[Hit]:
        """The ``k`` documents whose vectors have the largest inner product with the query's.

        Args:
            query: the search text (the model's query instruction is applied).
            k: number of hits.
            filter: metadata filter, as for ``HybridIndex.search`` (e.g. ``{"lang": "en"}``,
                ``{"year": {"$gte": 2020}}``); it is applied before the top k are taken.
        """
        if not isinstance(query, str):
            msg = f"query must be a str, got {type(query).__name__}."
            raise TypeError(msg)
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            msg = f"k must be a positive int, got {k!r}."
            raise ValueError(msg)
        candidates = np.flatnonzero(filter_mask(parse_filter(filter), self._metadatas))
        if candidates.size == 0:
            return []
        q = self._embedder.encode_queries([query])[0]
        scores = self._vectors[candidates] @ q
        return [self._hit(int(candidates[j]), float(scores[j])) for j in top_k(scores, k)]

    def _hit(self, i: int, score: float) -> Hit:
        return Hit(id=self._ids[i], text=self._texts[i], metadata=dict(self._metadatas[i]),
                   score=score, scores={"dense": score})

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to directory ``path`` (replaced atomically if it exists)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            np.save(staging / VECTORS_FILE, self._vectors)
            spec = self._embedder.spec
            manifest = {
                "format": _FORMAT, "kind": "dense", "model": self._embedder.model_name,
                "pooling": spec.pooling.value, "query_instruction": spec.query_instruction,
                "query_instruction_format": spec.query_instruction_format,
                "dim": int(self._vectors.shape[1]), "ids": self._ids, "texts": self._texts,
                "metadatas": self._metadatas,
            }
            (staging / INDEX_FILE).write_text(json.dumps(manifest, ensure_ascii=False),
                                              encoding="utf-8")
            _swap(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str], embedder: BGEEmbedder | None = None, *,
             model: str | None = None, **embedder_options: Any) -> DenseIndex:
        """Read an index written by :meth:`save`.

        Args:
            path: the index directory.
            embedder: the embedder to query with; by default the saved model (or ``model``)
                is loaded with the saved pooling and instruction plus ``embedder_options``
                (device, dtype, ...).
            model: where to load the model from when it is not where it was (same model).

        Raises:
            FileNotFoundError: ``path`` holds no dense index.
            ValueError: the files are inconsistent or the embedder's dimension differs.
        """
        manifest = read_manifest(path)
        vectors = np.load(Path(path) / VECTORS_FILE, allow_pickle=False)
        n = len(manifest["ids"])
        if vectors.shape != (n, manifest["dim"]) or not (
                len(manifest["texts"]) == len(manifest["metadatas"]) == n):
            msg = f"{str(path)!r}: index files disagree on the number of documents; rebuild it."
            raise ValueError(msg)
        if embedder is None:
            embedder = BGEEmbedder(
                model or manifest["model"], pooling=manifest["pooling"],
                query_instruction=manifest["query_instruction"] or "",
                query_instruction_format=manifest["query_instruction_format"],
                **embedder_options)
        index = cls(embedder)
        if embedder.dim != manifest["dim"]:
            msg = (f"{str(path)!r} holds {manifest['dim']}-d vectors but the embedder makes "
                   f"{embedder.dim}-d ones; query it with the model it was built with "
                   f"({manifest['model']!r}).")
            raise ValueError(msg)
        index._ids, index._texts = list(manifest["ids"]), list(manifest["texts"])
        index._metadatas = [dict(m) for m in manifest["metadatas"]]
        index._vectors = vectors.astype(np.float32, copy=False)
        return index


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON part of a saved dense index; :class:`FileNotFoundError` when there is none."""
    file = Path(path) / INDEX_FILE
    if not file.is_file():
        msg = f"{str(path)!r} is not a dense index directory (no {INDEX_FILE})."
        raise FileNotFoundError(msg)
    manifest = json.loads(file.read_text(encoding="utf-8"))
    if manifest.get("format") != _FORMAT or manifest.get("kind") != "dense":
        msg = f"{str(file)!r}: unsupported index format {manifest.get('format')!r}."
        raise ValueError(msg)
    return manifest


def _swap(staging: Path, target: Path) -> None:
    """Put ``staging`` at ``target``; an existing ``target`` is replaced, never half-written."""
    if not target.exists():
        staging.rename(target)
        return
    old = target.with_name(f".{target.name}-old-{uuid.uuid4().hex[:8]}")
    target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
