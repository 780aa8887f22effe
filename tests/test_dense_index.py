"""DenseIndex: the dense-only index (any non-M3 model), its persistence and concurrency, and
the CLI's index helpers around it. Patterns shared with HybridIndex: test_index*.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import _edit_manifest, _flip_bit, _rewrite, check_searches_see_whole_groups, generation

from bge_integrations import BGEEmbedder, DenseIndex, HybridIndex
from bge_integrations.cli.indexes import new_index, open_index, save_index
from bge_integrations.core.m3_heads import is_m3_model
from bge_integrations.retrieval import IndexFileError, ModelMismatchError
from bge_integrations.retrieval.dense import VECTORS_FILE
from bge_integrations.retrieval.persistence import (
    DOCS_FILE,
    LOCK_FILE,
    MANIFEST,
    IndexNotFoundError,
)
from bge_integrations.tiny_models import TINY_CORPUS, build_tiny_model

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
    assert hits[0].score == pytest.approx(float(expected.max()), rel=1e-5, abs=1e-6)
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
    assert sorted(p.name for p in target.iterdir()) == sorted([MANIFEST, LOCK_FILE,
                                                               generation(target).name])
    assert sorted(p.name for p in generation(target).iterdir()) == sorted([DOCS_FILE,
                                                                           VECTORS_FILE])
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["format"] == "bge-integrations/dense-index" and manifest["count"] == 4
    assert manifest["model"]["source"] == tiny_bert and manifest["model"]["pooling"] == "cls"
    loaded = DenseIndex.load(target, device="cpu")
    assert len(loaded) == 4
    before = [h.id for h in index.search("bamboo", k=4)]
    assert [h.id for h in loaded.search("bamboo", k=4)] == before


def test_load_rejects_a_model_of_another_dimension(index: DenseIndex, tmp_path: Path,
                                                   minilm_dir: str) -> None:
    index.save(tmp_path / "idx")
    with pytest.raises(ModelMismatchError, match="32-d vectors but the embedder makes 384-d"):
        DenseIndex.load(tmp_path / "idx", model=minilm_dir, device="cpu")
    with pytest.raises(FileNotFoundError, match="not a dense index"):
        DenseIndex.load(tmp_path)
    with pytest.raises(IndexNotFoundError, match="holds no saved index"):
        DenseIndex.load(tmp_path)
    assert issubclass(IndexNotFoundError, IndexFileError)


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


def test_search_many_equals_search_and_checks_its_inputs(index: DenseIndex) -> None:
    queries = ["what do pandas eat?", "capital of France"]
    many = index.search_many(queries, k=3, filter={"year": {"$gte": 2021}})
    for query, hits in zip(queries, many, strict=False):
        one = index.search(query, k=3, filter={"year": {"$gte": 2021}})
        # the tiny model's scores differ by ~1e-6, so batching may swap near-ties: compare
        # each document's score, and that both lists are ranked
        assert {h.id: h.score for h in hits} == pytest.approx({h.id: h.score for h in one},
                                                              rel=1e-5, abs=1e-6)
        assert len(hits) == 3
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    assert index.search_many([], k=3) == []
    with pytest.raises(TypeError, match="use search_many for lists"):
        index.search(["a list"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search("x", k=0)


# -- persistence: the checksummed layout of retrieval/persistence.py (helpers shared with
# -- test_index_persistence.py) -------------------------------------------------------------------
@pytest.fixture
def saved(index: DenseIndex, tmp_path: Path) -> Path:
    index.save(tmp_path / "index")
    return tmp_path / "index"


@pytest.mark.parametrize("name", [DOCS_FILE, VECTORS_FILE])
def test_bit_flip_in_any_file_is_detected(saved: Path, bert_embedder: BGEEmbedder,
                                          name: str) -> None:
    _flip_bit(generation(saved) / name)
    with pytest.raises(IndexFileError, match=f"{name}' fails its sha256 check"):
        DenseIndex.load(saved, bert_embedder)


@pytest.mark.parametrize("name", [DOCS_FILE, VECTORS_FILE])
def test_truncated_or_missing_file_is_detected(saved: Path, bert_embedder: BGEEmbedder,
                                               name: str) -> None:
    path = generation(saved) / name
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(IndexFileError, match="truncated"):
        DenseIndex.load(saved, bert_embedder, verify=False)  # sizes are checked even so
    path.unlink()
    with pytest.raises(IndexFileError, match="is missing"):
        DenseIndex.load(saved, bert_embedder)


@pytest.mark.parametrize(("corrupt", "match"), [
    (lambda d: (d / MANIFEST).write_text("{not json"), "cannot be read as JSON"),
    (lambda d: _edit_manifest(d, lambda m: m.update(format_version=99)),
     "version 99.*Upgrade bge-integrations"),
    (lambda d: _edit_manifest(d, lambda m: m["files"].pop(VECTORS_FILE)),
     "expected \\['dense.npy', 'docs.json'\\]"),
    (lambda d: _edit_manifest(d, lambda m: m.update(count=99)), "manifest says 99"),
    (lambda d: _edit_manifest(d, lambda m: m.pop("model")), "'model' = None is invalid"),
    (lambda d: _rewrite(d, VECTORS_FILE, lambda p: np.save(p, np.load(p).astype(np.float64))),
     "holds float64"),
    (lambda d: _rewrite(d, VECTORS_FILE, lambda p: np.save(p, np.load(p)[:, :8].copy())),
     "holds float32 \\(4, 8\\), expected float32 \\(4, 32\\)"),
    (lambda d: _rewrite(d, VECTORS_FILE, lambda p: np.save(p, np.array([{"x": 1}], dtype=object))),
     "holds object"),  # object arrays would need pickle: refused
    (lambda d: _rewrite(d, DOCS_FILE, lambda p: p.write_text('{"ids": [1]}')), "inconsistent"),
])
def test_corrupted_index_raises_a_clear_error(saved: Path, bert_embedder: BGEEmbedder,
                                              corrupt, match: str) -> None:  # noqa: ANN001
    corrupt(saved)
    with pytest.raises(IndexFileError, match=match):
        DenseIndex.load(saved, bert_embedder)


def test_each_kind_refuses_the_other(saved: Path, bert_embedder: BGEEmbedder, m3,  # noqa: ANN001
                                     tmp_path: Path) -> None:
    with pytest.raises(IndexFileError, match="holds a dense index, not a hybrid one; open it "
                                             "with DenseIndex.load"):
        HybridIndex.load(saved, m3)
    hybrid = HybridIndex(m3, store_colbert=False)
    hybrid.add(TEXTS, ids=IDS)
    hybrid.save(tmp_path / "hybrid")
    with pytest.raises(IndexFileError, match="holds a hybrid index, not a dense one; open it "
                                             "with HybridIndex.load"):
        DenseIndex.load(tmp_path / "hybrid", bert_embedder)


def test_crash_mid_save_leaves_previous_index_readable(index: DenseIndex, saved: Path,
                                                       bert_embedder: BGEEmbedder,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    before = sorted(p.name for p in saved.iterdir())
    other = DenseIndex(bert_embedder)
    other.add(["something else"])

    def disk_full(*args: object, **kwargs: object) -> None:
        msg = "disk full"
        raise OSError(msg)

    monkeypatch.setattr(np.lib.format, "write_array", disk_full)
    with pytest.raises(OSError, match="disk full"):
        other.save(saved)
    monkeypatch.undo()
    assert sorted(p.name for p in saved.iterdir()) == before  # no leftovers
    loaded = DenseIndex.load(saved, bert_embedder)
    assert len(loaded) == 4
    assert [h.id for h in loaded.search("bamboo", k=4)] == [h.id for h in index.search("bamboo",
                                                                                       k=4)]


def test_save_refuses_a_directory_that_is_not_an_index(index: DenseIndex, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and holds no saved index"):
        index.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_load_checks_the_model_by_its_embeddings_not_its_name(saved: Path, tiny_bert: str,
                                                              tmp_path: Path) -> None:
    renamed = tmp_path / "moved" / "my-copy"
    shutil.copytree(tiny_bert, renamed)
    moved = DenseIndex.load(saved, model=str(renamed), device="cpu")  # same weights: accepted
    assert len(moved) == 4
    other = build_tiny_model("bert", tmp_path / "seed1" / "bge-small-en-v1.5", seed=1)
    with pytest.raises(ModelMismatchError, match="embeddings of this model differ"):
        DenseIndex.load(saved, model=str(other), device="cpu")
    with pytest.raises(ModelMismatchError, match="embeddings of this model differ"):
        DenseIndex.load(saved, model=tiny_bert, pooling="mean", device="cpu")


# -- concurrency: the readers-writer lock of HybridIndex ------------------------------------------
def test_concurrent_searches_see_whole_adds_and_deletes(bert_embedder: BGEEmbedder) -> None:
    """Readers alternate unfiltered and filtered search (see
    :func:`test_index.check_searches_see_whole_groups`)."""
    idx = DenseIndex(bert_embedder)
    check_searches_see_whole_groups(
        idx, list(TINY_CORPUS),
        lambda i: idx.search_many(["panda", "France"], k=100,
                                  filter={"group": {"$ne": "none"}} if i % 2 else None))


def test_add_encodes_in_chunks_and_honours_the_per_call_limit(tiny_bert: str,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    from bge_integrations.retrieval import dense

    monkeypatch.setattr(dense, "_ENCODE_CHUNK", 4)
    limited = BGEEmbedder(tiny_bert, device="cpu", max_texts_per_call=10)
    index = DenseIndex(limited)
    texts = list(TINY_CORPUS[:10])
    with pytest.raises(ValueError, match="11 texts in one call exceed max_texts_per_call=10"):
        index.add([*texts, "one more"])
    assert index.add(texts, ids=[f"d{i}" for i in range(10)]) == [f"d{i}" for i in range(10)]
    np.testing.assert_allclose(index._state.vectors.view, limited.encode_documents(texts),
                               rtol=1e-5, atol=1e-6)
