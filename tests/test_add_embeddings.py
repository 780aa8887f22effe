"""``add_embeddings``: precomputed encoder outputs give the index ``add`` would build, on every
backend, and are checked as strictly as the embedder's own output (nothing changes on a
rejected call)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bge_integrations import BGEEmbedder, BGEM3Embedder, DenseIndex, HybridIndex
from bge_integrations.core.m3 import M3Output
from bge_integrations.tiny_models import TINY_CORPUS

TEXTS = list(TINY_CORPUS[:8])
IDS = [f"d{i}" for i in range(len(TEXTS))]
METAS = [{"i": i, "even": i % 2 == 0} for i in range(len(TEXTS))]
QUERIES = ["what is a panda bear?", "capital of France", "embedding model"]
MODES = ("dense", "sparse", "colbert", "hybrid")


def outputs_of(out: M3Output) -> dict[str, Any]:
    """The keyword arguments of ``add_embeddings`` from one ``encode_documents`` call."""
    return {"dense": out.dense, "sparse": out.sparse, "colbert": out.colbert}


def assert_same_hits(got: list[list[Any]], want: list[list[Any]]) -> None:
    assert [[(h.id, h.text, h.metadata) for h in hits] for hits in got] == [
        [(h.id, h.text, h.metadata) for h in hits] for hits in want]
    for a, b in zip(got, want, strict=False):
        # same vectors, same arithmetic: equal up to float rounding
        for x, y in zip(a, b, strict=True):
            assert x.score == pytest.approx(y.score, rel=1e-6, abs=1e-7)
            assert x.scores == pytest.approx(y.scores, rel=1e-6, abs=1e-7)


@pytest.fixture(scope="module")
def encoded(m3: BGEM3Embedder) -> M3Output:
    return m3.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)


@pytest.mark.parametrize("store_colbert", [True, False])
def test_hybrid_add_embeddings_equals_add(m3: BGEM3Embedder, encoded: M3Output,
                                          store_colbert: bool) -> None:
    by_model = HybridIndex(m3, store_colbert=store_colbert)
    by_model.add(TEXTS, metadatas=METAS, ids=IDS)
    given = HybridIndex(m3, store_colbert=store_colbert)
    outputs = outputs_of(encoded) if store_colbert else {**outputs_of(encoded), "colbert": None}
    assert given.add_embeddings(TEXTS, **outputs, metadatas=METAS, ids=IDS) == IDS
    assert len(given) == len(by_model) == len(TEXTS)
    for mode in MODES if store_colbert else ("dense", "sparse", "hybrid"):
        assert_same_hits(given.search_many(QUERIES, k=5, mode=mode),
                         by_model.search_many(QUERIES, k=5, mode=mode))
    assert given.get(IDS) == by_model.get(IDS)


def test_hybrid_add_embeddings_upserts_and_round_trips(m3: BGEM3Embedder, encoded: M3Output,
                                                       tmp_path: Any) -> None:
    index = HybridIndex(m3)
    index.add_embeddings(TEXTS, **outputs_of(encoded), ids=IDS)
    one = m3.encode_documents([TEXTS[5]], dense=True, sparse=True, colbert=True)
    index.add_embeddings([TEXTS[5]], **outputs_of(one), metadatas=[{"new": True}], ids=[IDS[0]])
    assert len(index) == len(TEXTS)
    assert index.get([IDS[0]])[0].metadata == {"new": True}
    index.save(tmp_path / "ix")
    loaded = HybridIndex.load(tmp_path / "ix", m3)
    for mode in MODES:
        assert_same_hits(loaded.search_many(QUERIES, k=8, mode=mode),
                         index.search_many(QUERIES, k=8, mode=mode))


def test_dense_add_embeddings_equals_add(bert_embedder: BGEEmbedder) -> None:
    by_model = DenseIndex(bert_embedder)
    by_model.add(TEXTS, metadatas=METAS, ids=IDS)
    given = DenseIndex(bert_embedder)
    vectors = bert_embedder.encode_documents(TEXTS)
    assert given.add_embeddings(TEXTS, vectors, metadatas=METAS, ids=IDS) == IDS
    assert_same_hits(given.search_many(QUERIES, k=5), by_model.search_many(QUERIES, k=5))
    assert_same_hits(given.search_many(QUERIES, k=5, filter={"even": True}),
                     by_model.search_many(QUERIES, k=5, filter={"even": True}))
    assert given.get(IDS[:3]) == by_model.get(IDS[:3])


def test_qdrant_add_embeddings_equals_add(m3: BGEM3Embedder, encoded: M3Output) -> None:
    pytest.importorskip("qdrant_client")
    from bge_integrations.retrieval import QdrantHybridIndex

    by_model = QdrantHybridIndex(m3, location=":memory:")
    by_model.add(TEXTS, metadatas=METAS, ids=IDS)
    given = QdrantHybridIndex(m3, location=":memory:")
    assert given.add_embeddings(TEXTS, **outputs_of(encoded), metadatas=METAS, ids=IDS) == IDS
    embedded = HybridIndex(m3)
    embedded.add_embeddings(TEXTS, **outputs_of(encoded), metadatas=METAS, ids=IDS)
    for mode in MODES:
        assert_same_hits(given.search_many(QUERIES, k=5, mode=mode),
                         by_model.search_many(QUERIES, k=5, mode=mode))
        got = given.search_many(QUERIES, k=5, mode=mode)
        want = embedded.search_many(QUERIES, k=5, mode=mode)
        assert [[h.id for h in hits] for hits in got] == [[h.id for h in hits] for hits in want]


def _bad_cases(encoded: M3Output, dim: int) -> list[tuple[dict[str, Any], str]]:
    dense, sparse, colbert = encoded.dense, encoded.sparse, encoded.colbert
    nan_dense = dense.copy()
    nan_dense[3, 1] = np.nan
    inf_col = [c.copy() for c in colbert]
    inf_col[2][0, 0] = np.inf
    return [
        ({"dense": dense[:, :-1]}, rf"dense has shape \(8, {dim - 1}\), expected \(8, {dim}\)"),
        ({"dense": dense[:-1]}, r"dense has shape \(7, "),
        ({"dense": nan_dense}, r"dense\[3\] holds NaN or inf"),
        ({"dense": dense.astype(np.float64) * 1e300}, r"dense\[0\] holds NaN or inf after"),
        ({"dense": dense.astype(str)}, "dense must hold real numbers"),
        ({"sparse": sparse[:-1]}, "sparse has 7 entries, expected one dict"),
        ({"sparse": [*sparse[:4], {10**9: 1.0}, *sparse[5:]]}, r"sparse\[4\] has token id"),
        ({"sparse": [*sparse[:4], {-1: 1.0}, *sparse[5:]]}, r"sparse\[4\] has token id -1"),
        ({"sparse": [*sparse[:4], {1: float("nan")}, *sparse[5:]]}, r"sparse\[4\]\[1\] = nan"),
        ({"sparse": [*sparse[:4], {1: -0.5}, *sparse[5:]]}, r"sparse\[4\]\[1\] = -0.5"),
        ({"sparse": [*sparse[:4], {True: 0.5}, *sparse[5:]]}, r"sparse\[4\] has token id True"),
        ({"sparse": [*sparse[:4], [1, 2], *sparse[5:]]}, r"sparse\[4\] must be a dict"),
        ({"sparse": {"0": 1.0}}, "sparse must be a list"),
        ({"colbert": colbert[:-1]}, "colbert has 7 entries"),
        ({"colbert": None}, "colbert is None, but this index stores ColBERT"),
        ({"colbert": [*colbert[:2], np.zeros((0, dim)), *colbert[3:]]}, r"colbert\[2\] has shape"),
        ({"colbert": [*colbert[:2], colbert[2][:, :-1], *colbert[3:]]}, r"colbert\[2\] has shape"),
        ({"colbert": inf_col}, r"colbert\[2\]\[0\] holds NaN or inf"),
        ({"colbert": b"\x00" * 8}, "colbert must be a list"),
    ]


def test_bad_embeddings_are_refused_naming_field_and_row(m3: BGEM3Embedder,
                                                        encoded: M3Output) -> None:
    index = HybridIndex(m3)
    index.add_embeddings(TEXTS[:2], **outputs_of(m3.encode_documents(TEXTS[:2], colbert=True)),
                         ids=["keep-0", "keep-1"])
    before = index.search_many(QUERIES, k=5)
    for change, match in _bad_cases(encoded, m3.dim):
        with pytest.raises(ValueError, match=match):
            index.add_embeddings(TEXTS, **{**outputs_of(encoded), **change}, ids=IDS)
    with pytest.raises(ValueError, match="one entry per text"):
        index.add_embeddings(TEXTS, **outputs_of(encoded), ids=IDS[:3])
    assert len(index) == 2 and index.search_many(QUERIES, k=5) == before


def test_qdrant_refuses_bad_embeddings_before_writing(m3: BGEM3Embedder,
                                                      encoded: M3Output) -> None:
    pytest.importorskip("qdrant_client")
    from bge_integrations.retrieval import QdrantHybridIndex

    index = QdrantHybridIndex(m3, location=":memory:")
    for change, match in _bad_cases(encoded, m3.dim):
        with pytest.raises(ValueError, match=match):
            index.add_embeddings(TEXTS, **{**outputs_of(encoded), **change}, ids=IDS)
    assert len(index) == 0


def test_dense_refuses_bad_embeddings(bert_embedder: BGEEmbedder) -> None:
    index = DenseIndex(bert_embedder)
    vectors = bert_embedder.encode_documents(TEXTS)
    bad = vectors.copy()
    bad[6, 0] = np.inf
    for value, match in [(vectors[:, :4], r"embeddings has shape \(8, 4\)"),
                         (vectors[:5], r"embeddings has shape \(5, "),
                         (bad, r"embeddings\[6\] holds NaN or inf"),
                         ([["a"] * vectors.shape[1]] * 8, "must hold real numbers")]:
        with pytest.raises(ValueError, match=match):
            index.add_embeddings(TEXTS, value, ids=IDS)
    assert len(index) == 0
    assert index.add_embeddings([], np.zeros((0, vectors.shape[1]))) == []


def test_add_refuses_a_broken_embedder_output(m3: BGEM3Embedder,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``add`` applies the same checks to what the model returned (e.g. NaN from a bad
    checkpoint or half precision overflow)."""
    index = HybridIndex(m3)
    real = m3.encode_documents

    def nan_dense(texts: list[str], **kwargs: bool) -> M3Output:
        out = real(texts, **kwargs)
        out.dense[-1, 0] = np.nan
        return out

    monkeypatch.setattr(m3, "encode_documents", nan_dense)
    with pytest.raises(ValueError, match=r"the embedder's dense\[2\] holds NaN"):
        index.add(TEXTS[:3])
    assert len(index) == 0
