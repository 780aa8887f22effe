"""Adds cost O(batch), not O(index): both embedded indexes append into shared buffers, publish
a new immutable state per call, and purge dead rows only once they outnumber live ones.

Before, ``DenseIndex.add`` rebuilt its tuples, id map and vector matrix on every call (a 1M-row
build in 1,000-row batches did not finish in 47 minutes, issue 23); these tests pin the
structure that makes it O(batch): no vector copy per add, few buffer growths, old states
untouched, and the same documents as a plain dict after random churn with compaction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import random_changes

from bge_integrations import BGEEmbedder, BGEM3Embedder, DenseIndex, HybridIndex
from bge_integrations.retrieval import doc_rows
from bge_integrations.tiny_models import TINY_CORPUS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = list(TINY_CORPUS)


@pytest.fixture(scope="module")
def vectors(bert_embedder: BGEEmbedder) -> np.ndarray:
    return bert_embedder.encode_documents(TEXTS)


def _vector_rows(index: DenseIndex | HybridIndex):  # noqa: ANN202 - a storage.Rows
    state = index._state
    return state.vectors if isinstance(index, DenseIndex) else state.dense


def _add_one(index: DenseIndex | HybridIndex, n: int, vectors: np.ndarray, m3_out=None) -> None:  # noqa: ANN001
    row = n % len(TEXTS)
    if isinstance(index, DenseIndex):
        index.add_embeddings([TEXTS[row]], vectors[[row]], ids=[f"d{n}"])
    else:
        index.add_embeddings([TEXTS[row]], dense=m3_out.dense[[row]],
                             sparse=[m3_out.sparse[row]], colbert=[m3_out.colbert[row]],
                             ids=[f"d{n}"])


@pytest.mark.parametrize("kind", ["dense", "hybrid"])
def test_adds_append_into_one_shared_buffer(kind: str, bert_embedder: BGEEmbedder,
                                            m3: BGEM3Embedder, vectors: np.ndarray) -> None:
    """500 one-document adds: the vector buffer is reused (not copied) by every add that fits,
    and grows by doubling, so it changes at most ~log2(500) times."""
    if kind == "dense":
        index, out = DenseIndex(bert_embedder), None
    else:
        index = HybridIndex(m3, store_colbert=True)
        out = m3.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)
        vectors = out.dense
    buffers, reused = set(), 0
    for n in range(500):
        before = _vector_rows(index)._buffer
        _add_one(index, n, vectors, out)
        after = _vector_rows(index)._buffer
        reused += after is before
        buffers.add(id(after))
    assert len(index) == 500
    assert len(buffers) <= 10, len(buffers)
    assert reused >= 490
    rows = [n % len(TEXTS) for n in range(500)]
    np.testing.assert_array_equal(_vector_rows(index).view, vectors[rows])


def test_a_published_dense_state_never_changes(bert_embedder: BGEEmbedder,
                                               vectors: np.ndarray,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader's state (as a search or a save holds it) keeps its documents and vectors while
    later adds share its buffer, upserts replace its rows and a compaction purges them."""
    monkeypatch.setattr(doc_rows, "COMPACT_MIN_DEAD", 4)
    index = DenseIndex(bert_embedder)
    index.add_embeddings(TEXTS[:6], vectors[:6], ids=[f"d{i}" for i in range(6)])
    held = index._state
    frozen = (held.ids.view.copy(), held.texts.view.copy(), held.vectors.view.copy(),
              dict(held.row_of), held.alive.copy())
    index.add_embeddings(TEXTS[6:8], vectors[6:8], ids=["d0", "new"])  # upsert + append
    index.delete(["d1", "d2", "d3", "d4"])  # dead rows now outnumber live ones: compaction
    assert index._state.ids.view.tolist() == ["d5", "d0", "new"]
    for kept, now in zip(frozen, (held.ids.view, held.texts.view, held.vectors.view,
                                  held.row_of, held.alive), strict=True):
        if isinstance(kept, dict):
            assert kept == now
        else:
            np.testing.assert_array_equal(kept, now)


def test_dense_search_skips_replaced_and_deleted_rows(bert_embedder: BGEEmbedder,
                                                      vectors: np.ndarray) -> None:
    index = DenseIndex(bert_embedder)
    index.add_embeddings(TEXTS[:4], vectors[:4], ids=["a", "b", "c", "d"])
    index.add_embeddings([TEXTS[5]], vectors[[5]], ids=["a"])  # row 0 dead, "a" is row 4
    index.delete(["b"])
    hits = index.search(TEXTS[5], k=10)
    assert sorted(h.id for h in hits) == ["a", "c", "d"]
    query = bert_embedder.encode_queries([TEXTS[5]])[0]
    want = {"a": vectors[5] @ query, "c": vectors[2] @ query, "d": vectors[3] @ query}
    for hit in hits:
        assert hit.score == pytest.approx(float(want[hit.id]), rel=1e-5, abs=1e-6)
        assert hit.text == (TEXTS[5] if hit.id == "a" else TEXTS["abcd".index(hit.id)])
    filtered = index.search(TEXTS[5], k=10, filter={"missing": {"$ne": 1}})
    assert [h.id for h in filtered] == [h.id for h in hits]


def test_random_dense_changes_match_a_plain_dict_model(bert_embedder: BGEEmbedder,
                                                       vectors: np.ndarray, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """400 random upserts, deletes and save/load cycles over 12 ids, with row compaction after
    2 dead rows: after every step each document (text, metadata, vector) and the ranking of a
    search equal a plain dict's."""
    monkeypatch.setattr(doc_rows, "COMPACT_MIN_DEAD", 2)
    query = bert_embedder.encode_queries([TEXTS[0]])[0]

    def add(index: DenseIndex, rows: list[int], metas: list[dict], ids: list[str]) -> None:
        index.add_embeddings([TEXTS[r] for r in rows], vectors[rows], metadatas=metas, ids=ids)

    def reload(index: DenseIndex) -> DenseIndex:
        index.save(tmp_path / "ix")
        return DenseIndex.load(tmp_path / "ix", bert_embedder)

    for step, kind, index, model in random_changes(DenseIndex(bert_embedder), steps=400,
                                                   seed=23, n_rows=len(TEXTS), add=add,
                                                   reload=reload):
        state = index._state
        got = {doc_id: (state.texts.view[r], json.dumps(state.metadatas.view[r]),
                        state.vectors.view[r].tobytes()) for doc_id, r in state.row_of.items()}
        want = {doc_id: (TEXTS[r], json.dumps(m), vectors[r].tobytes())
                for doc_id, (r, m) in model.items()}
        assert got == want, f"step {step} ({kind})"
        assert len(index) == len(model) == int(state.alive.sum())
        assert len(state.ids) <= 2 * len(model) + 2 + 4  # compaction bounds the dead rows
        hits = index.search(TEXTS[0], k=20)
        assert {h.id for h in hits} == set(model)
        scores = {doc_id: float(vectors[r] @ query) for doc_id, (r, _) in model.items()}
        for hit in hits:
            assert hit.score == pytest.approx(scores[hit.id], rel=1e-5, abs=1e-6)
