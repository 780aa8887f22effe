"""HybridIndex.save / load: round trips, atomic saves, corrupted files, model checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    CORPUS,
    IDS,
    METADATAS,
    MODES,
    QUERIES,
    _edit_manifest,
    _flip_bit,
    _rewrite,
    assert_same_hits,
    generation,
)

from bge_integrations import BGEM3Embedder, HybridIndex
from bge_integrations.retrieval import IndexFileError, ModelMismatchError, persistence
from bge_integrations.retrieval.persistence import LOCK_FILE, MANIFEST
from bge_integrations.tiny_models import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is faster
FILES = ["docs.json", "dense.npy", "sparse_indptr.npy", "sparse_indices.npy",
         "sparse_values.npy", "colbert.npy", "colbert_offsets.npy"]


def all_results(index: HybridIndex) -> list[list]:
    out = [index.search_many(QUERIES, k=6, mode=mode) for mode in MODES]
    return out + [index.search_many(QUERIES, k=6, fusion="rrf"),
                  index.search_many(QUERIES, k=6, filter={"parity": "odd"})]


def assert_same_index(a: HybridIndex, b: HybridIndex) -> None:
    assert len(a) == len(b)
    assert a.get(IDS) == b.get(IDS)
    for got, want in zip(all_results(a), all_results(b), strict=False):
        assert_same_hits(got, want, tol=1e-6)


@pytest.fixture(scope="module")
def built(m3x: BGEM3Embedder) -> HybridIndex:  # noqa: F811
    """An index with an upsert and deletes behind it (dead rows are not saved)."""
    idx = HybridIndex(m3x, candidates=50, rrf_k=30)
    idx.add(CORPUS, metadatas=METADATAS, ids=IDS)
    idx.add([CORPUS[3]], metadatas=[{"i": 3, "parity": "odd", "upserted": True}], ids=[IDS[3]])
    idx.delete([IDS[0], IDS[7]])
    return idx


@pytest.fixture
def saved(built: HybridIndex, tmp_path: Path) -> Path:
    built.save(tmp_path / "index")
    return tmp_path / "index"


def test_round_trip_gives_the_same_index(built: HybridIndex, saved: Path,
                                         m3x: BGEM3Embedder) -> None:  # noqa: F811
    loaded = HybridIndex.load(saved, m3x)
    assert_same_index(loaded, built)
    assert (loaded.candidates, loaded.rrf_k, loaded.store_colbert, loaded.colbert_dtype) == (
        50, 30, True, "float32")
    assert loaded.get([IDS[3]])[0].metadata["upserted"] is True
    manifest = json.loads((saved / MANIFEST).read_text())
    assert manifest["format_version"] == 1 and manifest["count"] == len(CORPUS) - 2
    assert sorted(manifest["files"]) == sorted(FILES)
    assert manifest["model"]["name"] == "BAAI/bge-m3" and manifest["model"]["dim"] == 32


@pytest.mark.parametrize("options", [{"store_colbert": False}, {"colbert_dtype": "float16"}])
def test_round_trip_of_each_storage_option(m3x: BGEM3Embedder, tmp_path: Path,  # noqa: F811
                                           options: dict) -> None:
    idx = HybridIndex(m3x, **options)
    idx.add(CORPUS, metadatas=METADATAS, ids=IDS)
    idx.save(tmp_path / "ix")
    loaded = HybridIndex.load(tmp_path / "ix", m3x)
    assert (loaded.store_colbert, loaded.colbert_dtype) == (idx.store_colbert, idx.colbert_dtype)
    modes = ("dense", "sparse", "hybrid") if options.get("store_colbert") is False else MODES
    for mode in modes:
        assert_same_hits(loaded.search_many(QUERIES, k=5, mode=mode),
                         idx.search_many(QUERIES, k=5, mode=mode), tol=1e-6)


def test_add_after_load_and_save_again(built: HybridIndex, saved: Path,
                                       m3x: BGEM3Embedder) -> None:  # noqa: F811
    """A loaded index takes new documents (ColBERT vectors then span two files) and can be
    saved over its own directory while its old files are still mapped."""
    loaded = HybridIndex.load(saved, m3x)
    loaded.add([CORPUS[0], CORPUS[7]], metadatas=[METADATAS[0], METADATAS[7]],
               ids=[IDS[0], IDS[7]])
    fresh = HybridIndex(m3x, candidates=50, rrf_k=30)
    fresh.add(CORPUS, metadatas=METADATAS, ids=IDS)
    fresh.add([CORPUS[3]], metadatas=[{"i": 3, "parity": "odd", "upserted": True}], ids=[IDS[3]])
    assert {r.id for r in loaded.get(IDS)} == set(IDS)
    for mode in MODES:
        assert sorted(h.id for h in loaded.search(QUERIES[0], k=20, mode=mode)) == sorted(
            h.id for h in fresh.search(QUERIES[0], k=20, mode=mode))
    before = generation(saved)
    loaded.save(saved)
    assert not before.exists()  # the previous generation is removed after the switch
    assert sorted(p.name for p in saved.iterdir()) == sorted([MANIFEST, LOCK_FILE,
                                                              generation(saved).name])
    assert_same_index(HybridIndex.load(saved, m3x), loaded)
    assert_same_index(loaded, HybridIndex.load(saved, m3x))  # the live index still reads


def test_save_refuses_a_directory_that_is_not_an_index(built: HybridIndex, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and holds no saved index"):
        built.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("fail_at", ["write", "manifest"])
def test_crash_mid_save_leaves_previous_index_readable(
        built: HybridIndex, saved: Path, m3x: BGEM3Embedder,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, fail_at: str) -> None:
    before = sorted(p.name for p in saved.iterdir())
    other = HybridIndex(m3x)
    other.add(CORPUS[:2])
    real_replace = persistence.os.replace

    def disk_full(*args: object, **kwargs: object) -> None:
        msg = "disk full"
        raise OSError(msg)

    def power_cut_before_manifest(src: str, dst: str) -> None:
        if str(dst).endswith(MANIFEST):
            msg = "power cut"
            raise OSError(msg)
        real_replace(src, dst)

    if fail_at == "write":  # dies while writing the data files
        monkeypatch.setattr(np.lib.format, "write_array", disk_full)
    else:  # dies after the new generation is in place, before the manifest switch
        monkeypatch.setattr(persistence.os, "replace", power_cut_before_manifest)
    with pytest.raises(OSError, match="disk full|power cut"):
        other.save(saved)
    monkeypatch.undo()
    assert sorted(p.name for p in saved.iterdir()) == before  # no leftovers
    assert_same_index(HybridIndex.load(saved, m3x), built)


@pytest.mark.parametrize("name", FILES)
def test_bit_flip_in_any_file_is_detected(saved: Path, m3x: BGEM3Embedder,  # noqa: F811
                                          name: str) -> None:
    _flip_bit(generation(saved) / name)
    with pytest.raises(IndexFileError, match=f"{name}' fails its sha256 check"):
        HybridIndex.load(saved, m3x)


@pytest.mark.parametrize("name", ["dense.npy", "colbert.npy", "docs.json"])
def test_truncated_or_missing_file_is_detected(saved: Path, m3x: BGEM3Embedder,  # noqa: F811
                                               name: str) -> None:
    path = generation(saved) / name
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IndexFileError, match="truncated"):
        HybridIndex.load(saved, m3x, verify=False)  # sizes are checked even without hashing
    path.unlink()
    with pytest.raises(IndexFileError, match="is missing"):
        HybridIndex.load(saved, m3x)


@pytest.mark.parametrize(("corrupt", "match"), [
    (lambda d: (d / MANIFEST).write_text("{not json"), "cannot be read as JSON"),
    (lambda d: (d / MANIFEST).unlink(), "holds no saved index"),
    (lambda d: _edit_manifest(d, lambda m: m.update(format="other")), "not a bge-integrations"),
    (lambda d: _edit_manifest(d, lambda m: m.update(format_version=99)),
     "version 99.*Upgrade bge-integrations"),
    (lambda d: _edit_manifest(d, lambda m: m.update(generation="../../etc")), "bad 'generation'"),
    (lambda d: _edit_manifest(d, lambda m: m["files"].update({"../x.npy": {}})),
     "bad file entry '../x.npy'"),
    (lambda d: _edit_manifest(d, lambda m: m["files"].pop("colbert_offsets.npy")),
     "expected \\['colbert.npy', 'colbert_offsets.npy'"),
    (lambda d: _edit_manifest(d, lambda m: m.update(count=99)), "manifest says 99"),
    (lambda d: _edit_manifest(d, lambda m: m["config"].update(colbert_dtype="int4")),
     "manifest .* is corrupted"),
    (lambda d: _rewrite(d, "sparse_indices.npy",
                        lambda p: np.save(p, np.full(np.load(p).shape, 10**6, np.int32))),
     "sparse arrays do not form a valid"),
    (lambda d: _rewrite(d, "dense.npy", lambda p: np.save(p, np.load(p).astype(np.float64))),
     "holds float64"),
    (lambda d: _rewrite(d, "dense.npy",
                        lambda p: np.save(p, np.array([{"x": 1}], dtype=object))),
     "holds object"),  # object arrays would need pickle: refused
    (lambda d: _rewrite(d, "colbert_offsets.npy",
                        lambda p: np.save(p, np.load(p)[::-1].copy())),
     "does not split"),
    (lambda d: _rewrite(d, "docs.json", lambda p: p.write_text('{"ids": [1]}')),
     "inconsistent"),
])
def test_corrupted_index_raises_a_clear_error(saved: Path, m3x: BGEM3Embedder,  # noqa: F811
                                              corrupt, match: str) -> None:  # noqa: ANN001
    corrupt(saved)
    with pytest.raises(IndexFileError, match=match):
        HybridIndex.load(saved, m3x)


@pytest.fixture(scope="module")
def other_models(m3x: BGEM3Embedder, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
                 ) -> dict[str, BGEM3Embedder]:
    root = tmp_path_factory.mktemp("other-models")
    renamed = root / "my-finetuned-m3"
    shutil.copytree(m3x.model_name, renamed)
    no_colbert = root / "no-colbert" / "bge-m3"
    shutil.copytree(m3x.model_name, no_colbert)
    (no_colbert / "colbert_linear.pt").unlink()
    wide = build_tiny_model("xlm-roberta", root / "wide" / "bge-m3", hidden_size=48)
    other_seed = build_tiny_model("xlm-roberta", root / "seed1" / "bge-m3", seed=1)
    return {name: BGEM3Embedder(str(path), device="cpu") for name, path in (
        ("name", renamed), ("heads", no_colbert), ("dim", wide), ("weights", other_seed))}


@pytest.mark.parametrize(("which", "match"), [
    ("name", "built with name='BAAI/bge-m3'"),
    ("dim", "built with dim=32, this model has 48"),
    ("heads", "colbert_linear.pt"),
    ("weights", "same name 'BAAI/bge-m3', different weights"),
])
def test_loading_with_another_model_is_refused(saved: Path, other_models: dict, which: str,
                                               match: str) -> None:
    with pytest.raises(ModelMismatchError, match=match):
        HybridIndex.load(saved, other_models[which])
