"""DenseIndex: the dense-only index of the CLI and the demo, and the index helpers around it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bge_integrations import BGEEmbedder, HybridIndex
from bge_integrations.dense_index import INDEX_FILE, VECTORS_FILE, DenseIndex
from bge_integrations.indexes import is_m3_model, new_index, open_index, save_index

TEXTS = ["The giant panda is a bear.", "Paris is in France.", "Rust is a language.",
         "Pandas eat bamboo."]
METAS = [{"topic": "bio", "year": 2020}, {"topic": "geo", "year": 2021},
         {"topic": "cs", "year": 2024}, {"topic": "bio", "year": 2024}]
IDS = ["panda", "paris", "rust", "bamboo"]


@pytest.fixture
def index(bert_embedder: BGEEmbedder) -> DenseIndex:
    index = DenseIndex(bert_embedder)
    index.add(TEXTS, metadatas=METAS, ids=IDS)
    return index


def test_search_ranks_by_inner_product_with_the_query_vector(index: DenseIndex,
                                                             bert_embedder: BGEEmbedder) -> None:
    hits = index.search("what do pandas eat?", k=4)
    q = bert_embedder.encode_queries(["what do pandas eat?"])[0]
    expected = bert_embedder.encode_documents(TEXTS) @ q
    assert [h.id for h in hits] == [IDS[i] for i in np.argsort(-expected, kind="stable")]
    assert hits[0].score == pytest.approx(float(expected.max()), abs=1e-6)
    assert hits[0].scores == {"dense": hits[0].score}


def test_filters_use_the_hybrid_index_language(index: DenseIndex) -> None:
    assert {h.id for h in index.search("x", k=4, filter={"topic": "bio"})} == {"panda", "bamboo"}
    assert [h.id for h in index.search("x", k=4, filter={"year": {"$gte": 2024},
                                                          "topic": {"$ne": "cs"}})] == ["bamboo"]
    assert index.search("x", k=4, filter={"topic": "none"}) == []
    with pytest.raises(ValueError, match="Unknown operator"):
        index.search("x", filter={"year": {"$near": 1}})


def test_add_upserts_and_delete_ignores_unknown_ids(index: DenseIndex) -> None:
    assert index.add(["Paris is the capital of France."], ids=["paris"]) == ["paris"]
    assert len(index) == 4
    assert [h.text for h in index.search("x", k=4, filter={"topic": "geo"})] == []
    assert index.delete(["rust", "nope"]) == 1
    assert len(index) == 3
    with pytest.raises(ValueError, match="one entry per text"):
        index.add(["a", "b"], ids=["only-one"])
    assert len(index) == 3


def test_save_and_load_round_trip_without_pickle(index: DenseIndex, tmp_path: Path,
                                                 tiny_bert: str) -> None:
    target = tmp_path / "idx"
    index.save(target)
    index.save(target)  # replacing an existing save
    assert sorted(p.name for p in target.iterdir()) == [INDEX_FILE, VECTORS_FILE]
    manifest = json.loads((target / INDEX_FILE).read_text())
    assert manifest["model"] == tiny_bert and manifest["pooling"] == "cls"
    loaded = DenseIndex.load(target, device="cpu")
    assert len(loaded) == 4
    before = [h.id for h in index.search("bamboo", k=4)]
    assert [h.id for h in loaded.search("bamboo", k=4)] == before


def test_load_rejects_a_model_of_another_dimension(index: DenseIndex, tmp_path: Path,
                                                   minilm_dir: str) -> None:
    index.save(tmp_path / "idx")
    with pytest.raises(ValueError, match="32-d vectors but the embedder makes 384-d"):
        DenseIndex.load(tmp_path / "idx", model=minilm_dir, device="cpu")
    with pytest.raises(FileNotFoundError, match="not a dense index"):
        DenseIndex.load(tmp_path)


def test_index_helpers_pick_and_reopen_either_kind(tmp_path: Path, tiny_bert: str,
                                                   tiny_m3: str, tiny_m3_no_heads: str) -> None:
    assert is_m3_model("BAAI/bge-m3") and is_m3_model(tiny_m3)
    assert not is_m3_model(tiny_bert) and not is_m3_model(tiny_m3_no_heads)
    for model, kind in ((tiny_bert, DenseIndex), (tiny_m3, HybridIndex)):
        built = new_index(model, device="cpu")
        assert isinstance(built, kind)
        built.add(TEXTS, metadatas=METAS, ids=IDS)
        save_index(built, tmp_path / kind.__name__)
        reopened = open_index(tmp_path / kind.__name__, device="cpu")
        assert isinstance(reopened, kind) and len(reopened) == 4
        assert reopened.search("bamboo", k=1)[0].id == built.search("bamboo", k=1)[0].id
    with pytest.raises(ValueError, match="CLS pooling"):
        new_index(tiny_m3, pooling="mean")
