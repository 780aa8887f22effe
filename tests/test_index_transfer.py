"""Moving indexes without re-embedding: ``iter_embeddings`` on every index, ``copy_index``
between the embedded indexes and their Qdrant backends (in-process client), the checks it makes
before writing, ``QdrantDenseIndex``'s parity with ``DenseIndex``, and the CLI's
``index upload`` / ``index download``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    CORPUS,
    FILTER_CASES,
    IDS,
    METADATAS,
    MODES,
    QUERIES,
    assert_close,
    assert_same_hits,
)

from bge_integrations import BGEEmbedder, BGEM3Embedder, DenseIndex, HybridIndex
from bge_integrations.cli import main
from bge_integrations.retrieval import ModelMismatchError, copy_index
from bge_integrations.retrieval.transfer import PROBE_DOCS
from bge_integrations.tiny_models import build_tiny_model

pytest.importorskip("qdrant_client")
from bge_integrations.retrieval import QdrantDenseIndex, QdrantHybridIndex  # noqa: E402
from bge_integrations.retrieval.qdrant import FINGERPRINT_KEY  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is faster
PROG = "bge-integrations"


@pytest.fixture(scope="module")
def minilm(minilm_dir: str) -> BGEEmbedder:
    """A dense model whose scores differ clearly between documents (the tiny BERT's do not)."""
    return BGEEmbedder(minilm_dir, pooling="mean", device="cpu")


@pytest.fixture(scope="module")
def dense_index(minilm: BGEEmbedder) -> DenseIndex:
    idx = DenseIndex(minilm)
    idx.add(CORPUS, metadatas=METADATAS, ids=IDS)
    return idx


@pytest.fixture(scope="module")
def dense_remote(minilm: BGEEmbedder) -> QdrantDenseIndex:
    idx = QdrantDenseIndex(minilm, location=":memory:")
    idx.add(CORPUS, metadatas=METADATAS, ids=IDS)
    return idx


@pytest.fixture(scope="module")
def other_m3(tmp_path_factory: pytest.TempPathFactory) -> BGEM3Embedder:
    """A BGE-M3 of the same sizes as the session's, with other weights."""
    path = build_tiny_model("xlm-roberta", tmp_path_factory.mktemp("other") / "bge-m3", seed=1)
    return BGEM3Embedder(str(path), device="cpu")


@pytest.fixture
def document_calls(monkeypatch: pytest.MonkeyPatch, m3x: BGEM3Embedder,
                   minilm: BGEEmbedder) -> list[int]:
    """How many texts each ``encode_documents`` call of either model got, while the test runs."""
    calls: list[int] = []
    for embedder in (m3x, minilm):
        def spy(texts: Any, *args: Any, _original: Any = embedder.encode_documents,
                **kwargs: Any) -> Any:
            calls.append(len(texts))
            return _original(texts, *args, **kwargs)

        monkeypatch.setattr(embedder, "encode_documents", spy)
    return calls


def stored(index: Any, batch_size: int = 5) -> dict[str, dict[str, Any]]:
    """Everything ``index`` stores, by id, read through ``iter_embeddings``."""
    out = {}
    for batch in index.iter_embeddings(batch_size):
        assert len(batch) <= batch_size and batch.dense.dtype == np.float32
        for i, doc_id in enumerate(batch.ids):
            out[doc_id] = {"text": batch.texts[i], "metadata": batch.metadatas[i],
                           "dense": batch.dense[i],
                           "sparse": None if batch.sparse is None else batch.sparse[i],
                           "colbert": None if batch.colbert is None else batch.colbert[i]}
    return out


def assert_same_store(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> None:
    """Same ids, texts and metadata; every vector within 1e-6."""
    assert sorted(got) == sorted(want)
    for doc_id, doc in want.items():
        copy = got[doc_id]
        assert (copy["text"], copy["metadata"]) == (doc["text"], doc["metadata"])
        assert_close(copy["dense"], doc["dense"], rtol=1e-6)
        if doc["sparse"] is None:
            assert copy["sparse"] is None
        else:
            assert sorted(copy["sparse"]) == sorted(doc["sparse"])
            assert_close([copy["sparse"][t] for t in sorted(doc["sparse"])],
                         [doc["sparse"][t] for t in sorted(doc["sparse"])], rtol=1e-6)
        if doc["colbert"] is None:
            assert copy["colbert"] is None
        else:
            assert copy["colbert"].shape == doc["colbert"].shape
            assert_close(copy["colbert"], doc["colbert"], rtol=1e-6)


# -- round trips ----------------------------------------------------------------------------------
def test_hybrid_index_goes_to_qdrant_and_back_without_re_embedding(
        index: HybridIndex, m3x: BGEM3Embedder, document_calls: list[int]) -> None:
    remote = QdrantHybridIndex(m3x, location=":memory:", candidates=100)
    assert document_calls == [1]  # the new collection records the model's fingerprint
    document_calls.clear()
    assert copy_index(index, remote, batch_size=5) == len(CORPUS)  # 5 does not divide 14
    back = HybridIndex(m3x, candidates=100)
    assert copy_index(remote, back, batch_size=4) == len(CORPUS)
    # only the identity probe ran: one call of at most PROBE_DOCS texts per copy
    assert len(document_calls) == 2 and max(document_calls) <= PROBE_DOCS
    want = stored(index)
    assert all(doc["colbert"] is not None for doc in want.values())
    assert_same_store(stored(remote, batch_size=3), want)
    assert_same_store(stored(back), want)
    for mode in MODES:
        expected = index.search_many(QUERIES, k=5, mode=mode)
        assert_same_hits(remote.search_many(QUERIES, k=5, mode=mode), expected)
        assert_same_hits(back.search_many(QUERIES, k=5, mode=mode), expected)
    assert_same_hits(back.search_many(QUERIES, k=5, fusion="rrf"),
                     index.search_many(QUERIES, k=5, fusion="rrf"))


def test_dense_index_goes_to_qdrant_and_back_without_re_embedding(
        dense_index: DenseIndex, minilm: BGEEmbedder, document_calls: list[int]) -> None:
    remote = QdrantDenseIndex(minilm, location=":memory:")
    assert document_calls == [1]  # the new collection records the model's fingerprint
    document_calls.clear()
    assert copy_index(dense_index, remote, batch_size=3) == len(CORPUS)
    back = DenseIndex(minilm)
    assert copy_index(remote, back, batch_size=100) == len(CORPUS)
    assert len(document_calls) == 2 and max(document_calls) <= PROBE_DOCS
    want = stored(dense_index)
    assert all(doc["sparse"] is None and doc["colbert"] is None for doc in want.values())
    assert_same_store(stored(remote), want)
    assert_same_store(stored(back), want)
    expected = dense_index.search_many(QUERIES, k=5)
    assert_same_hits(remote.search_many(QUERIES, k=5), expected)
    assert_same_hits(back.search_many(QUERIES, k=5), expected)


def test_deleted_documents_are_not_exported_and_an_export_is_one_version(
        index: HybridIndex, m3x: BGEM3Embedder) -> None:
    local = HybridIndex(m3x)
    copy_index(index, local)
    local.delete(IDS[:3])
    batches = local.iter_embeddings(batch_size=2)  # the state published now
    local.delete(IDS[3:6])
    local.add(["added later"], ids=["late"])
    assert [i for batch in batches for i in batch.ids] == IDS[3:]
    remote = QdrantHybridIndex(m3x, location=":memory:")
    assert copy_index(local, remote) == len(CORPUS) - 6 + 1
    remote.delete([IDS[6]])
    assert sorted(stored(remote)) == sorted([*IDS[7:], "late"])
    back = HybridIndex(m3x)
    assert copy_index(remote, back) == len(CORPUS) - 6
    assert_same_store(stored(back), stored(remote))


def test_empty_indexes_copy_nothing(m3x: BGEM3Embedder, minilm: BGEEmbedder) -> None:
    assert list(HybridIndex(m3x).iter_embeddings()) == []
    assert copy_index(HybridIndex(m3x), QdrantHybridIndex(m3x, location=":memory:")) == 0
    assert copy_index(QdrantDenseIndex(minilm, location=":memory:"), DenseIndex(minilm)) == 0
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            HybridIndex(m3x).iter_embeddings(bad)
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            copy_index(HybridIndex(m3x), HybridIndex(m3x), batch_size=bad)


# -- checks before the first write ------------------------------------------------------------
def test_a_collection_of_another_model_is_refused_before_any_write(
        index: HybridIndex, m3x: BGEM3Embedder, other_m3: BGEM3Embedder) -> None:
    remote = QdrantHybridIndex(other_m3, location=":memory:")
    with pytest.raises(ModelMismatchError, match=(
            rf"another model.*source model '{re.escape(m3x.model_name)}', target model "
            rf"'{re.escape(other_m3.model_name)}'.*nothing was written")):
        copy_index(index, remote)
    assert len(remote) == 0
    remote.add(CORPUS[:2], ids=["x", "y"])  # the other model's documents ...
    with pytest.raises(ModelMismatchError, match="'bge-m3' was written by another model"):
        QdrantHybridIndex(m3x, client=remote.client,  # ... opened with the source's model
                          collection_name=remote.collection_name)
    # a collection without our model record (written by other tools): copy_index checks it
    remote.client.update_collection(remote.collection_name, metadata={FINGERPRINT_KEY: None})
    same_model = QdrantHybridIndex(m3x, client=remote.client,
                                   collection_name=remote.collection_name)
    with pytest.raises(ModelMismatchError, match="target already holds documents of another"):
        copy_index(index, same_model)
    assert len(same_model) == 2


def test_the_dense_model_is_checked_by_dimension_and_embeddings(
        dense_index: DenseIndex, bert_embedder: BGEEmbedder, tmp_path: Path,
        m3x: BGEM3Embedder) -> None:
    target = QdrantDenseIndex(bert_embedder, location=":memory:")
    with pytest.raises(ModelMismatchError, match="holds 384-d vectors.*makes 32-d"):
        copy_index(dense_index, target)
    other = BGEEmbedder(str(build_tiny_model("bert", tmp_path / "bge-small-en-v1.5", seed=1)),
                        device="cpu")  # the same sizes, other weights
    source = DenseIndex(bert_embedder)
    source.add(CORPUS[:4], ids=IDS[:4])
    with pytest.raises(ModelMismatchError, match="another model"):
        copy_index(source, QdrantDenseIndex(other, location=":memory:"))
    assert len(target) == 0
    with pytest.raises(TypeError, match="cannot copy a dense-only DenseIndex into a BGE-M3"):
        copy_index(dense_index, HybridIndex(m3x))
    with pytest.raises(TypeError, match="got object as the target"):
        copy_index(dense_index, object())


def test_colbert_vectors_are_never_dropped_or_invented_silently(
        index: HybridIndex, m3x: BGEM3Embedder) -> None:
    without = HybridIndex(m3x, store_colbert=False)
    with pytest.raises(ValueError, match="pass drop_colbert=True"):
        copy_index(index, without)
    assert len(without) == 0
    assert copy_index(index, without, drop_colbert=True) == len(CORPUS)
    with pytest.raises(ValueError, match="create the target with store_colbert=False"):
        copy_index(without, QdrantHybridIndex(m3x, location=":memory:"))
    remote = QdrantHybridIndex(m3x, location=":memory:", store_colbert=False)
    assert copy_index(without, remote) == len(CORPUS)
    assert_same_store(stored(remote), stored(without))
    assert all(doc["colbert"] is None for doc in stored(remote).values())
    assert_same_hits(remote.search_many(QUERIES, k=5), without.search_many(QUERIES, k=5))


# -- QdrantDenseIndex: DenseIndex's contract on a collection ---------------------------------
@pytest.mark.parametrize(("spec", "predicate"), FILTER_CASES,
                         ids=[str(c[0]) for c in FILTER_CASES])
def test_qdrant_dense_filters_select_what_dense_index_selects(
        dense_remote: QdrantDenseIndex, dense_index: DenseIndex, spec: dict,
        predicate: Any) -> None:
    matching = {IDS[n] for n, m in enumerate(METADATAS) if predicate(m)}
    got = dense_remote.search(QUERIES[0], k=20, filter=spec)
    assert_same_hits([got], [dense_index.search(QUERIES[0], k=20, filter=spec)])
    assert {h.id for h in got} == matching


def test_qdrant_dense_index_keeps_the_dense_contract(dense_remote: QdrantDenseIndex,
                                                     dense_index: DenseIndex,
                                                     minilm: BGEEmbedder,
                                                     m3x: BGEM3Embedder) -> None:
    for k in (1, 4, len(CORPUS)):
        assert_same_hits(dense_remote.search_many(QUERIES, k=k),
                         dense_index.search_many(QUERIES, k=k))
    assert dense_remote.search(QUERIES[1], k=3) == dense_remote.search_many([QUERIES[1]], k=3)[0]
    assert dense_remote.modes == dense_index.modes and dense_remote.embedder is minilm
    with pytest.raises(ValueError, match="QdrantDenseIndex ranks by dense scores only"):
        dense_remote.search("x", mode="hybrid")
    with pytest.raises(TypeError, match="QdrantDenseIndex needs a dense embedder"):
        QdrantDenseIndex(m3x, location=":memory:")
    with pytest.raises(ValueError, match="a BGE-M3 collection: open it with QdrantHybridIndex"):
        QdrantDenseIndex(minilm, client=QdrantHybridIndex(m3x, collection_name="c").client,
                         collection_name="c")

    crud = QdrantDenseIndex(minilm, location=":memory:", collection_name="crud")
    crud.add(CORPUS[:4], metadatas=METADATAS[:4], ids=IDS[:4])
    crud.add_embeddings([CORPUS[9]], minilm.encode_documents([CORPUS[9]]),
                        metadatas=[{"new": 1}], ids=[IDS[1]])
    assert len(crud) == 4
    assert [(r.id, r.text, r.metadata) for r in crud.get([IDS[1], "nope", IDS[0]])] == [
        (IDS[1], CORPUS[9], {"new": 1}), (IDS[0], CORPUS[0], METADATAS[0])]
    assert crud.delete([IDS[0], "nope"]) == 1 and len(crud) == 3
    with pytest.raises(ValueError, match=r"embeddings has shape \(1, 3\)"):
        crud.add_embeddings(["x"], np.ones((1, 3)))
    assert len(crud) == 3


# -- the command line ------------------------------------------------------------------------------
def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def saved(index: HybridIndex, tmp_path: Path) -> Iterator[Path]:
    index.save(tmp_path / "hybrid")
    yield tmp_path / "hybrid"


def test_cli_upload_and_download_round_trip(capsys: pytest.CaptureFixture[str], saved: Path,
                                            index: HybridIndex, m3x: BGEM3Embedder,
                                            dense_index: DenseIndex, minilm_dir: str,
                                            tmp_path: Path) -> None:
    qdrant = str(tmp_path / "qdrant")
    code, _, err = run(capsys, "index", "upload", str(saved), "--collection", "docs",
                       "--qdrant-path", qdrant, "--device", "cpu")
    assert code == 0, err
    assert f"uploaded {len(CORPUS)} documents" in err and "(14 there now)" in err
    out = tmp_path / "back"
    code, _, err = run(capsys, "index", "download", "--collection", "docs", "--qdrant-path",
                       qdrant, "--model", m3x.model_name, "--out", str(out), "--device", "cpu")
    assert code == 0, err
    assert f"downloaded {len(CORPUS)} documents" in err and "(HybridIndex)" in err
    back = HybridIndex.load(out, m3x)
    assert back.store_colbert
    assert_same_store(stored(back), stored(index))
    assert_same_hits(back.search_many(QUERIES, k=5), index.search_many(QUERIES, k=5))

    dense_index.save(tmp_path / "dense")
    code, _, err = run(capsys, "index", "upload", str(tmp_path / "dense"), "--collection",
                       "dense", "--qdrant-path", qdrant, "--device", "cpu")
    assert code == 0, err
    code, _, err = run(capsys, "index", "download", "--collection", "dense", "--qdrant-path",
                       qdrant, "--model", minilm_dir, "--pooling", "mean", "--out",
                       str(tmp_path / "dense-back"), "--device", "cpu")
    assert code == 0 and "(DenseIndex)" in err, err
    dense_back = DenseIndex.load(tmp_path / "dense-back")
    assert_same_store(stored(dense_back), stored(dense_index))


def test_cli_transfer_errors_are_one_line(capsys: pytest.CaptureFixture[str], saved: Path,
                                          tmp_path: Path, m3x: BGEM3Embedder) -> None:
    qdrant = tmp_path / "qdrant"
    qdrant.mkdir()
    cases = [
        (["index", "upload", str(tmp_path / "nope"), "--collection", "c", "--qdrant-path",
          str(qdrant)], "does not exist"),
        (["index", "download", "--collection", "missing", "--qdrant-path", str(qdrant),
          "--model", m3x.model_name, "--out", str(tmp_path / "o")],
         "Qdrant collection 'missing' does not exist"),
        (["index", "download", "--collection", "c", "--qdrant-path", str(tmp_path / "none"),
          "--model", m3x.model_name, "--out", str(tmp_path / "o")], "does not exist"),
        (["index", "upload", str(saved), "--collection", "c", "--qdrant-path", str(qdrant),
          "--api-key", "k"], "--api-key is for a Qdrant server"),
        (["index", "download", "--collection", "c", "--qdrant-path", str(qdrant), "--model",
          m3x.model_name, "--out", str(saved / "manifest.json")], "is not a directory"),
    ]
    for argv, fragment in cases:
        code, out, err = run(capsys, *argv, "--device", "cpu")
        assert code == 1 and out == "", err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: "), err
        assert fragment in lines[0], err
    for argv in (["index", "upload", str(saved), "--collection", "c", "--qdrant-path",
                  str(qdrant), "--url", "http://localhost:6333"],
                 ["index", "upload", str(saved), "--qdrant-path", str(qdrant)],
                 ["index", "download", "--collection", "c", "--qdrant-path", str(qdrant),
                  "--out", str(tmp_path / "o")]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
