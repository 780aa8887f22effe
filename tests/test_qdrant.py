"""QdrantHybridIndex on the in-process client: same results as the embedded index, filters,
upsert / delete / get, collection checks, and no qdrant import from ``import bge_integrations``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import CORPUS, FILTER_CASES, IDS, METADATAS, MODES, QUERIES, assert_same_hits

import bge_integrations
from bge_integrations import BGEEmbedder, BGEM3Embedder, HybridIndex
from bge_integrations.retrieval.filters import parse_filter
from bge_integrations.retrieval.qdrant import point_id, to_qdrant_filter

pytest.importorskip("qdrant_client")
from bge_integrations.retrieval import QdrantHybridIndex  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is faster


@pytest.fixture(scope="module")
def qindex(m3x: BGEM3Embedder) -> QdrantHybridIndex:  # noqa: F811
    idx = QdrantHybridIndex(m3x, location=":memory:", candidates=100)
    idx.add(CORPUS, metadatas=METADATAS, ids=IDS)
    return idx


@pytest.mark.parametrize("mode", MODES)
def test_same_results_as_embedded_index(qindex: QdrantHybridIndex, index: HybridIndex,  # noqa: F811
                                        mode: str) -> None:
    for k in (3, len(CORPUS)):
        assert_same_hits(qindex.search_many(QUERIES, k=k, mode=mode),
                         index.search_many(QUERIES, k=k, mode=mode))


def test_same_rrf_and_weighted_results_as_embedded_index(qindex: QdrantHybridIndex,
                                                         index: HybridIndex) -> None:  # noqa: F811
    for kwargs in ({"fusion": "rrf"}, {"weights": (0.2, 0.5, 0.3)},
                   {"fusion": "rrf", "weights": (1, 0, 1)}):
        assert_same_hits(qindex.search_many(QUERIES, k=6, **kwargs),
                         index.search_many(QUERIES, k=6, **kwargs), tol=1e-6)


@pytest.mark.parametrize(("spec", "predicate"), FILTER_CASES,
                         ids=[str(c[0]) for c in FILTER_CASES])
def test_filters_select_the_same_documents(qindex: QdrantHybridIndex, index: HybridIndex,  # noqa: F811
                                           spec: dict, predicate) -> None:  # noqa: ANN001
    matching = {IDS[n] for n, m in enumerate(METADATAS) if predicate(m)}
    for mode in ("dense", "sparse", "hybrid"):
        got = qindex.search(QUERIES[0], k=20, filter=spec, mode=mode)
        assert_same_hits([got], [index.search(QUERIES[0], k=20, filter=spec, mode=mode)])
        if mode != "sparse":
            assert {h.id for h in got} == matching
    if len(matching) > 1:  # pre-filtering: k hits whenever k documents match
        assert len(qindex.search(QUERIES[0], k=len(matching) - 1, filter=spec)) == len(
            matching) - 1


def test_upsert_delete_get_len(m3x: BGEM3Embedder) -> None:  # noqa: F811
    idx = QdrantHybridIndex(m3x, collection_name="crud")
    idx.add(CORPUS[:4], metadatas=METADATAS[:4], ids=IDS[:4])
    idx.add([CORPUS[9]], metadatas=[{"new": 1}], ids=[IDS[1]])
    assert len(idx) == 4
    assert [(r.id, r.text, r.metadata) for r in idx.get([IDS[1], "nope", IDS[0]])] == [
        (IDS[1], CORPUS[9], {"new": 1}), (IDS[0], CORPUS[0], METADATAS[0])]
    assert idx.delete([IDS[0], "nope"]) == 1
    assert len(idx) == 3 and idx.get([IDS[0]]) == []
    assert IDS[0] not in {h.id for h in idx.search(QUERIES[0], k=10)}
    ids = idx.add(["auto id"])
    assert len(ids[0]) == 32 and idx.get(ids)[0].text == "auto id"


def test_invalid_add_writes_nothing(m3x: BGEM3Embedder) -> None:  # noqa: F811
    idx = QdrantHybridIndex(m3x, collection_name="validation")
    with pytest.raises(ValueError, match="JSON-serialisable"):
        idx.add(CORPUS[:3], metadatas=[{}, {}, {"bad": object()}])
    with pytest.raises(ValueError, match="appears twice"):
        idx.add(CORPUS[:2], ids=["same", "same"])
    assert len(idx) == 0


def test_store_colbert_false_and_collection_checks(m3x: BGEM3Embedder,  # noqa: F811
                                                   tmp_path: Path) -> None:
    idx = QdrantHybridIndex(m3x, path=str(tmp_path / "q"), collection_name="docs",
                            store_colbert=False)
    idx.add(CORPUS, ids=IDS)
    embedded = HybridIndex(m3x, store_colbert=False)
    embedded.add(CORPUS, ids=IDS)
    assert_same_hits(idx.search_many(QUERIES, k=5), embedded.search_many(QUERIES, k=5))
    with pytest.raises(ValueError, match="store_colbert=False"):
        idx.search(QUERIES[0], mode="colbert")
    idx.client.close()
    reopened = QdrantHybridIndex(m3x, path=str(tmp_path / "q"), collection_name="docs",
                                 store_colbert=False)
    assert len(reopened) == len(CORPUS)  # an existing collection is reused
    with pytest.raises(ValueError, match="needs a 'colbert' multivector"):
        QdrantHybridIndex(m3x, client=reopened.client, collection_name="docs")
    with pytest.raises(ValueError, match="either client or location"):
        QdrantHybridIndex(m3x, client=reopened.client, location=":memory:")
    reopened.client.close()


def test_filter_translation() -> None:
    from qdrant_client import models

    flt = to_qdrant_filter(parse_filter({"score": 0.5, "lang": {"$in": ["en", "de"]},
                                         "$or": [{"year": {"$gte": 2020}}, {"ok": {"$ne": True}}]}))
    score, lang, either = flt.must[0].must[0], flt.must[1].must[0], flt.must[2]
    assert score.key == "metadata.score" and score.range == models.Range(gte=0.5, lte=0.5)
    assert lang.match == models.MatchAny(any=["en", "de"])
    assert either.should[0].must[0].range == models.Range(gte=2020)
    assert either.should[1].must[0].must_not[0].match == models.MatchValue(value=True)
    mixed = to_qdrant_filter(parse_filter({"x": {"$in": [1, "a"]}})).must[0]
    assert mixed.should[0].range == models.Range(gte=1, lte=1)  # matches 1 and 1.0 payloads
    assert mixed.should[1].match.value == "a"
    assert to_qdrant_filter(None) is None
    assert point_id("doc-1") == point_id("doc-1") != point_id("doc-2")


def test_qdrant_client_is_imported_only_inside_functions() -> None:
    """``import bge_integrations`` must work without the [qdrant] extra (and stay fast)."""
    package = Path(bge_integrations.__file__).parent
    for path in [package / "__init__.py", *(package / "retrieval").glob("*.py")]:
        for node in ast.parse(path.read_text()).body:  # module-level statements only
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("qdrant_client") for n in names), path.name


def test_add_over_the_embedders_per_call_limit_is_refused_whole(m3x: BGEM3Embedder  # noqa: F811
                                                                 ) -> None:
    limited = BGEM3Embedder(m3x.model_name, device="cpu", max_texts_per_call=70)
    idx = QdrantHybridIndex(limited, collection_name="limited")  # encodes 64 texts per call
    with pytest.raises(ValueError, match="71 texts in one call exceed max_texts_per_call=70"):
        idx.add([f"text {i}" for i in range(71)])
    assert len(idx) == 0


def test_collections_record_their_model_and_refuse_another(
        m3x: BGEM3Embedder, bert_embedder: BGEEmbedder,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A collection an index creates records the model's fingerprint; an index on another
    model (other weights, or the other kind) is refused before anything is read or written,
    naming the layout difference too; a collection without a record opens as it is and gets
    one while it is empty."""
    from qdrant_client import QdrantClient, models

    from bge_integrations.retrieval import ModelMismatchError, QdrantDenseIndex
    from bge_integrations.retrieval.qdrant import FINGERPRINT_KEY
    from bge_integrations.tiny_models import build_tiny_model

    client = QdrantClient(location=":memory:")
    hybrid = QdrantHybridIndex(m3x, client=client, collection_name="m3")
    record = client.get_collection("m3").config.metadata[FINGERPRINT_KEY]
    assert record["dim"] == m3x.dim and record["heads"] == ["dense", "sparse", "colbert"]
    hybrid.add(CORPUS[:2], ids=IDS[:2])
    QdrantHybridIndex(m3x, client=client, collection_name="m3")  # the same model: fine
    other = BGEM3Embedder(str(build_tiny_model(
        "xlm-roberta", tmp_path_factory.mktemp("other-m3") / "bge-m3", seed=1)), device="cpu")
    with pytest.raises(ModelMismatchError, match="'m3' was written by another model"):
        QdrantHybridIndex(other, client=client, collection_name="m3")
    with pytest.raises(ModelMismatchError, match=r"another model.*a BGE-M3 collection"):
        QdrantDenseIndex(bert_embedder, client=client, collection_name="m3")
    QdrantDenseIndex(bert_embedder, client=client, collection_name="dense")
    with pytest.raises(ModelMismatchError, match="dense vectors of .*open it with QdrantDense"):
        QdrantHybridIndex(m3x, client=client, collection_name="dense")
    assert len(hybrid) == 2
    client.create_collection("foreign", vectors_config={
        "dense": models.VectorParams(size=bert_embedder.dim, distance=models.Distance.DOT)})
    QdrantDenseIndex(bert_embedder, client=client, collection_name="foreign")
    assert client.get_collection("foreign").config.metadata[FINGERPRINT_KEY]["dim"] == \
        bert_embedder.dim
