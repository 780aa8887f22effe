"""The index contract (``SearchIndex``) and the encoder protocols: every index satisfies it,
the wrong embedder is refused at construction, saves record the model's source, and the CLI
helpers and the LlamaIndex retriever work on any index through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bge_integrations import BGEEmbedder, BGEM3Embedder, DenseIndex, HybridIndex
from bge_integrations.cli.indexes import LEGACY_MODEL_FILE, new_index, open_index, save_index
from bge_integrations.retrieval import (
    DenseEncoder,
    IndexFileError,
    M3Encoder,
    RetrievalMode,
    SearchIndex,
    persistence,
)
from bge_integrations.retrieval.persistence import MANIFEST
from bge_integrations.tiny_models import TINY_CORPUS

TEXTS = list(TINY_CORPUS[:6])
IDS = [f"t{i}" for i in range(len(TEXTS))]


def test_every_index_satisfies_the_contract(m3: BGEM3Embedder,
                                            bert_embedder: BGEEmbedder) -> None:
    qdrant = pytest.importorskip("bge_integrations.retrieval.qdrant")
    indexes = [HybridIndex(m3), HybridIndex(m3, store_colbert=False), DenseIndex(bert_embedder),
               qdrant.QdrantHybridIndex(m3, location=":memory:"),
               qdrant.QdrantDenseIndex(bert_embedder, location=":memory:")]
    for index in indexes:
        assert isinstance(index, SearchIndex)
        index.add(TEXTS, ids=IDS)
        assert len(index) == len(TEXTS)
        assert [r.id for r in index.get(["t2", "nope", "t0"])] == ["t2", "t0"]
        for mode in index.modes:
            assert len(index.search("panda", k=3, mode=mode)) <= 3
        assert index.delete(["t0"]) == 1 and len(index) == len(TEXTS) - 1
    assert indexes[0].embedder is m3 and indexes[2].embedder is bert_embedder
    assert indexes[0].modes == tuple(RetrievalMode)
    assert RetrievalMode.COLBERT not in indexes[1].modes
    assert indexes[2].modes == indexes[4].modes == (RetrievalMode.DENSE,)
    assert isinstance(m3, M3Encoder) and isinstance(bert_embedder, DenseEncoder)
    assert not isinstance(bert_embedder, M3Encoder)


def test_the_wrong_embedder_is_refused_with_a_clear_type_error(
        m3: BGEM3Embedder, bert_embedder: BGEEmbedder) -> None:
    with pytest.raises(TypeError, match="HybridIndex needs a BGE-M3 embedder.*got BGEEmbedder"
                                        ".*DenseIndex"):
        HybridIndex(bert_embedder)
    qdrant = pytest.importorskip("bge_integrations.retrieval.qdrant")
    with pytest.raises(TypeError, match="QdrantHybridIndex needs a BGE-M3 embedder"):
        qdrant.QdrantHybridIndex(bert_embedder, location=":memory:")
    with pytest.raises(TypeError, match="DenseIndex needs a dense embedder.*HybridIndex"):
        DenseIndex(m3)


def test_dense_index_get_and_its_one_mode(bert_embedder: BGEEmbedder) -> None:
    index = DenseIndex(bert_embedder)
    index.add(TEXTS[:2], metadatas=[{"a": [1]}, None], ids=IDS[:2])
    got = index.get(["t1", "t0", "t0"][:2])
    assert [(r.id, r.text, r.metadata) for r in got] == [("t1", TEXTS[1], {}),
                                                         ("t0", TEXTS[0], {"a": [1]})]
    got[1].metadata["a"].append(2)  # a copy
    assert index.get(["t0"])[0].metadata == {"a": [1]}
    assert index.search("x", k=1, mode="dense") == index.search("x", k=1)
    with pytest.raises(ValueError, match="DenseIndex ranks by dense scores only"):
        index.search("x", mode="hybrid")


def test_hybrid_save_records_the_source_and_load_needs_no_model(m3: BGEM3Embedder,
                                                                tmp_path: Path) -> None:
    index = HybridIndex(m3)
    index.add(TEXTS, ids=IDS)
    index.save(tmp_path / "ix")
    manifest = json.loads((tmp_path / "ix" / MANIFEST).read_text())
    assert manifest["model"]["source"] == m3.model_name
    by_record = HybridIndex.load(tmp_path / "ix", device="cpu")
    by_model = HybridIndex.load(tmp_path / "ix", model=m3.model_name, device="cpu")
    positional = HybridIndex.load(tmp_path / "ix", m3)
    want = index.search_many(["panda", "France"], k=4)
    for loaded in (by_record, by_model, positional):
        got = loaded.search_many(["panda", "France"], k=4)
        assert [[h.id for h in hits] for hits in got] == [[h.id for h in hits] for hits in want]
    with pytest.raises(TypeError, match="not both"):
        HybridIndex.load(tmp_path / "ix", m3, device="cpu")


def _drop_source(folder: Path) -> None:
    """Make the manifest look like one written before saves recorded the model's source."""
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["model"]["source"]
    manifest[persistence.MANIFEST_CHECKSUM] = persistence._manifest_checksum(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_cli_helpers_save_one_directory_and_open_earlier_saves(tiny_m3: str,
                                                               tmp_path: Path) -> None:
    index = new_index(tiny_m3, device="cpu")
    index.add(TEXTS, ids=IDS)
    save_index(index, tmp_path / "ix")
    assert not (tmp_path / "ix" / LEGACY_MODEL_FILE).exists()  # the manifest says it all
    want = [h.id for h in index.search("panda", k=3)]
    assert [h.id for h in open_index(tmp_path / "ix", device="cpu").search("panda", k=3)] == want
    # an index saved by the previous version: no source in the manifest, model.json beside it
    _drop_source(tmp_path / "ix")
    (tmp_path / "ix" / LEGACY_MODEL_FILE).write_text(json.dumps({"model": tiny_m3}))
    reopened = open_index(tmp_path / "ix", device="cpu")
    assert [h.id for h in reopened.search("panda", k=3)] == want
    (tmp_path / "ix" / LEGACY_MODEL_FILE).write_text(json.dumps({"model": ["x"]}))
    with pytest.raises(IndexFileError, match="does not name a model"):
        open_index(tmp_path / "ix", device="cpu")
    (tmp_path / "ix" / LEGACY_MODEL_FILE).write_text("[" * 60_000)
    with pytest.raises(IndexFileError, match="cannot be read as JSON"):
        open_index(tmp_path / "ix", device="cpu")
    assert [h.id for h in open_index(tmp_path / "ix", model=tiny_m3, device="cpu").search(
        "panda", k=3)] == want


def test_llama_index_retriever_works_on_any_index(bert_embedder: BGEEmbedder,
                                                  m3: BGEM3Embedder) -> None:
    pytest.importorskip("llama_index.core")
    from bge_integrations.llama_index import BGEM3Retriever

    dense = DenseIndex(bert_embedder)
    dense.add(TEXTS, ids=IDS)
    retriever = BGEM3Retriever(dense, mode="dense", similarity_top_k=2)
    nodes = retriever.retrieve("panda")
    assert [n.node.node_id for n in nodes] == [h.id for h in dense.search("panda", k=2)]
    with pytest.raises(ValueError, match="not a mode of this DenseIndex; valid: 'dense'"):
        BGEM3Retriever(dense)
    with pytest.raises(ValueError, match="colbert"):
        BGEM3Retriever(HybridIndex(m3, store_colbert=False), mode="colbert")
