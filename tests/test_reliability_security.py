"""Security: no pickle or eval in the library, hostile checkpoints run no code, hostile ids,
metadata and index directories change nothing they should not.
"""

from __future__ import annotations

import ast
import json
import math
import os
import pickle
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import CORPUS, QUERIES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bge_integrations import BGEEmbedder, BGEM3Embedder, HybridIndex
from bge_integrations.retrieval import IndexFileError
from bge_integrations.retrieval.persistence import MANIFEST

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is faster

PACKAGE = Path(__file__).resolve().parent.parent / "bge_integrations"
#: modules that deserialize with pickle (or run code while loading)
UNSAFE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve",
                  "marshal"}
UNSAFE_BUILTINS = {"eval", "exec"}


# -- static scan ---------------------------------------------------------------------------
def _literal(node: ast.AST | None) -> object:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return "<not a literal>"


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def unsafe_calls(source: str, filename: str = "<source>") -> list[str]:
    """Every unsafe (de)serialization or code-execution use in ``source``, as ``file:line what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                node.module or ""]
            found += [f"{where} imports {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kwargs = {k.arg: k.value for k in node.keywords}
        if name in UNSAFE_BUILTINS or name.endswith(("read_pickle", "unsafe_load", "jit.load")):
            found.append(f"{where} calls {name}")
        elif name == "torch.load" and _literal(kwargs.get("weights_only")) is not True:
            found.append(f"{where} calls torch.load without weights_only=True")
        elif name.split(".")[-1] == "load" and name.split(".")[0] in {"np", "numpy"} and (
                _literal(kwargs.get("allow_pickle")) not in (None, False)):
            found.append(f"{where} calls {name} with allow_pickle")
        elif name == "yaml.load" and "SafeLoader" not in ast.unparse(node):
            found.append(f"{where} calls yaml.load without SafeLoader")
        elif name.endswith("from_pretrained") and _literal(kwargs.get("trust_remote_code")) is True:
            found.append(f"{where} hard-codes trust_remote_code=True")
    return found


def test_library_source_has_no_pickle_eval_or_unsafe_loads(record_property: Callable) -> None:
    """AST scan of every module of bge_integrations/ for pickle/dill/joblib/marshal imports,
    eval/exec, torch.load without weights_only=True, np.load(allow_pickle=True), yaml.load,
    read_pickle, torch.jit.load and hard-coded trust_remote_code=True.

    Checks: nothing is found, and the same scan flags each of those patterns in a bad sample
    (so the scan can fail).
    """
    files = sorted(PACKAGE.rglob("*.py"))
    found = [hit for f in files
             for hit in unsafe_calls(f.read_text(encoding="utf-8"), str(f.relative_to(PACKAGE)))]
    assert found == []
    bad = ("import pickle\nfrom dill import loads\nimport joblib\neval('1')\nexec('x=1')\n"
           "torch.load(p)\ntorch.load(p, weights_only=False)\nnp.load(p, allow_pickle=True)\n"
           "numpy.load(p, allow_pickle=flag)\nyaml.load(s)\npd.read_pickle(p)\n"
           "torch.jit.load(p)\nAutoModel.from_pretrained(p, trust_remote_code=True)\n")
    assert len(unsafe_calls(bad)) == 13
    assert unsafe_calls("torch.load(p, weights_only=True)\nnp.load(p, allow_pickle=False)\n"
                        "yaml.load(s, Loader=yaml.SafeLoader)\n") == []
    record_property("iterations", len(files))
    record_property("held", f"{len(files)} modules: no unsafe use; 13/13 bad patterns flagged")


# -- hostile checkpoints ---------------------------------------------------------------------
class _Payload:
    """Unpickling this creates ``marker``: proof that pickle code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.makedirs, (str(self.marker),)


def _plant_payload(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"weight": _Payload(marker)}, protocol=2))
    with path.open("rb") as f:  # the payload is live: plain pickle runs it
        pickle.load(f)
    assert marker.exists()
    marker.rmdir()


@pytest.mark.parametrize("head", ["colbert", "sparse"])
def test_malicious_pickle_head_file_is_not_executed(tiny_m3: str, tmp_path: Path, head: str,
                                                    record_property: Callable) -> None:
    """A pickle whose loading runs code (creates a marker) replaces colbert_linear.pt /
    sparse_linear.pt; BGE-M3 then encodes with that head.

    Checks: the payload is live (plain pickle.load runs it); our load raises and the marker
    is never created.
    """
    model = tmp_path / "bge-m3"
    shutil.copytree(tiny_m3, model)
    marker = tmp_path / "pwned"
    _plant_payload(model / f"{head}_linear.pt", marker)
    m3 = BGEM3Embedder(str(model), device="cpu")
    with pytest.raises(Exception) as info:
        m3.encode_documents(["hello"], dense=False, sparse=head == "sparse",
                            colbert=head == "colbert")
    assert not marker.exists()
    record_property("held", f"refused with {type(info.value).__name__}; no code ran")


def test_malicious_pickle_head_file_error_is_clear(tiny_m3: str, tmp_path: Path) -> None:
    """A pickle with code in place of colbert_linear.pt gives an error that names the file and does
    not advise weights_only=False."""
    model = tmp_path / "bge-m3"
    shutil.copytree(tiny_m3, model)
    _plant_payload(model / "colbert_linear.pt", tmp_path / "pwned")
    m3 = BGEM3Embedder(str(model), device="cpu")
    with pytest.raises(Exception) as info:
        m3.encode_documents(["hello"], colbert=True)
    assert "colbert_linear.pt" in str(info.value)
    assert "weights_only` set to `False` will likely succeed" not in str(info.value)


def test_malicious_pytorch_model_bin_is_not_executed(tiny_bert: str, tmp_path: Path,
                                                     record_property: Callable) -> None:
    """The backbone's weights are a pickle with code (pytorch_model.bin, no safetensors).

    Checks: loading the embedder fails and the marker is never created.
    """
    model = tmp_path / "bge-small-en-v1.5"
    shutil.copytree(tiny_bert, model)
    (model / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    _plant_payload(model / "pytorch_model.bin", marker)
    with pytest.raises(Exception) as info:
        BGEEmbedder(str(model), device="cpu")
    assert not marker.exists()
    record_property("held", f"refused with {type(info.value).__name__}; no code ran")


def test_remote_code_runs_only_with_trust_remote_code(tiny_bert: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      record_property: Callable) -> None:
    """A checkpoint whose config.json auto_map points at its own modeling file, which creates a
    marker file when imported.

    Checks: without trust_remote_code the marker never appears (the built-in class loads);
    with trust_remote_code=True it does (so the check can fail).
    """
    from transformers import dynamic_module_utils

    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    model = tmp_path / "custom-bert"
    shutil.copytree(tiny_bert, model)
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (model / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "remote-code-ran"
    (model / "modeling_custom.py").write_text(
        "from pathlib import Path\n"
        "from transformers import BertConfig, BertModel\n"
        f"Path({str(marker)!r}).write_text('ran')\n"
        "class CustomModel(BertModel):\n"
        "    config_class = BertConfig\n")
    plain = BGEEmbedder(str(model), pooling="cls", device="cpu")
    assert not marker.exists()
    assert type(plain._loaded.model).__name__ == "BertModel"
    trusted = BGEEmbedder(str(model), pooling="cls", device="cpu", trust_remote_code=True)
    assert marker.exists() and type(trusted._loaded.model).__name__ == "CustomModel"
    record_property("held", "no code ran without trust_remote_code; it ran with it")


# -- hostile ids and metadata ----------------------------------------------------------------
class CountingM3:
    """Forwards to a BGEM3Embedder and counts the encode calls (to prove none happened)."""

    def __init__(self, m3: BGEM3Embedder) -> None:
        self._m3 = m3
        self.encodes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._m3, name)

    def encode_documents(self, *args: Any, **kwargs: Any) -> Any:
        self.encodes += 1
        return self._m3.encode_documents(*args, **kwargs)


class _Opaque:
    """An object with no JSON form."""


def _circular() -> dict:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


BAD_IDS = {
    "nul": ["\x00"], "nul-inside": ["a\x00b"], "newline": ["a\nb"], "rtl-override": ["a\u202eb"],
    "lone-surrogate": ["\ud800"], "empty": [""], "too-long": ["x" * 513], "int": [7],
    "none": [None], "bytes": [b"doc"], "duplicate": ["a", "a"], "bare-string": "a",
}
BAD_METADATA = {
    "set": {"s": {1, 2}}, "object": {"o": _Opaque()}, "nan": {"x": math.nan},
    "inf": {"x": math.inf}, "-inf": {"x": -math.inf}, "bytes": {"b": b"x"},
    "int-key": {1: "x"}, "tuple-key": {(1, 2): "x"}, "nested-set": {"a": [{"s": {1}}]},
    "nested-nan": {"a": {"b": [math.nan]}}, "circular": _circular(), "not-a-dict": ["x"],
    "complex": {"c": 1j},
    "nested-int-key": {"a": {1: "x", "1": "y"}}, "lone-surrogate": {"s": "\ud800"},
    "surrogate-key": {"k\udfff": 1},
}


@pytest.fixture
def small_index(m3x: BGEM3Embedder, tmp_path: Path  # noqa: F811
                ) -> tuple[HybridIndex, CountingM3, Path]:
    counting = CountingM3(m3x)
    colbert_dir = tmp_path / "colbert"
    colbert_dir.mkdir()
    index = HybridIndex(counting, colbert_dir=colbert_dir)
    index.add(CORPUS[:4], ids=[f"doc-{i}" for i in range(4)],
              metadatas=[{"i": i} for i in range(4)])
    return index, counting, colbert_dir


def _observe(index: HybridIndex, colbert_dir: Path) -> tuple:
    hits = [(h.id, h.text, h.metadata, h.score) for h in index.search(QUERIES[0], k=10)]
    return (len(index), index.get([f"doc-{i}" for i in range(4)]), hits,
            sorted((p.name, p.stat().st_size) for p in colbert_dir.iterdir()))


def _assert_rejected_before_writing(index: HybridIndex, counting: CountingM3, colbert_dir: Path,
                                    match: str, **add_kwargs: Any) -> None:
    before, encodes = _observe(index, colbert_dir), counting.encodes
    with pytest.raises((ValueError, TypeError), match=match):
        index.add(**add_kwargs)
    assert counting.encodes == encodes, "the texts were encoded before the input was rejected"
    assert _observe(index, colbert_dir) == before


@pytest.mark.parametrize("ids", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_bad_ids_are_rejected_before_anything_is_written(small_index: tuple, ids: object,
                                                         record_property: Callable) -> None:
    """add() with an id that is NUL, a control or bidi-override character, a lone surrogate, empty,
    over 512 characters, not a str, a duplicate, or a bare string.

    Checks: ValueError/TypeError before any text is encoded; length, records, search results
    and the ColBERT staging files are unchanged. (Path-like ids such as "../../etc/passwd" are
    valid data that never becomes a path: test_index.py::test_ids_are_never_paths.)
    """
    index, counting, colbert_dir = small_index
    texts = ["a new text"] * (len(ids) if isinstance(ids, list) else 1)
    _assert_rejected_before_writing(index, counting, colbert_dir, "ids", texts=texts, ids=ids)
    record_property("held", "rejected before encoding; index and files unchanged")


@pytest.mark.parametrize("metadata", list(BAD_METADATA.values()), ids=list(BAD_METADATA))
def test_metadata_without_a_faithful_json_form_is_rejected(small_index: tuple, metadata: object,
                                                           record_property: Callable) -> None:
    """add() with metadata that JSON cannot hold as given: sets, objects, bytes, complex, NaN/±inf,
    non-str keys (top level or nested), circular references, a lone surrogate, a non-dict.

    Checks: ValueError/TypeError before any text is encoded; the index and its files are
    unchanged.
    """
    index, counting, colbert_dir = small_index
    _assert_rejected_before_writing(index, counting, colbert_dir, "metadatas", texts=["a new text"],
                                    metadatas=[metadata], ids=["new"])
    record_property("held", "rejected before encoding; index and files unchanged")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
EXAMPLES = 12


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5), min_size=1,
                max_size=4))
def test_json_metadata_round_trips_exactly(m3x: BGEM3Embedder, tmp_path: Path,  # noqa: F811
                                           record_property: Callable,
                                           metadatas: list[dict[str, Any]]) -> None:
    """Hypothesis: arbitrary JSON metadata (Unicode keys, nested lists and dicts, big ints, floats
    incl. -0.0 and subnormals) through add, get, save and load.

    Checks: get returns exactly what was given (type-aware: True stays a bool, 1.0 a float),
    before and after a save/load round trip.
    """
    index = HybridIndex(m3x, store_colbert=False)
    ids = [f"m{i}" for i in range(len(metadatas))]
    index.add([f"text {i}" for i in ids], metadatas=metadatas, ids=ids)
    target = tmp_path / f"meta-{abs(hash(repr(metadatas)))}"
    index.save(target)
    for idx in (index, HybridIndex.load(target, m3x)):
        assert _typed([r.metadata for r in idx.get(ids)]) == _typed(metadatas)
    record_property("iterations", EXAMPLES)
    record_property("held", f"{EXAMPLES} generated batches stored and reloaded exactly")


def _typed(value: object) -> object:
    """``value`` with every scalar paired with its type (so 1 != 1.0 != True)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float) and value == 0.0:
        return ("float", math.copysign(1.0, value))
    return (type(value).__name__, value)


# -- hostile index directories ---------------------------------------------------------------
@pytest.fixture
def saved_dir(small_index: tuple, tmp_path: Path) -> Path:
    index, _, _ = small_index
    index.save(tmp_path / "index")
    return tmp_path / "index"


def test_save_and_load_refuse_a_file_path(small_index: tuple, tmp_path: Path,
                                          record_property: Callable) -> None:
    """save() and load() given the path of an existing file (and load() given a missing path).

    Checks: save raises and the file's bytes are unchanged; load raises IndexFileError.
    """
    index, _, _ = small_index
    victim = tmp_path / "notes.txt"
    victim.write_text("keep me")
    with pytest.raises((OSError, ValueError)):
        index.save(victim)
    assert victim.read_text() == "keep me"
    for path in (victim, tmp_path / "missing"):
        with pytest.raises(IndexFileError, match="holds no saved index"):
            HybridIndex.load(path, index.m3)
    record_property("held", "save raised, file unchanged; load raised IndexFileError")


def test_symlinks_in_an_index_directory_are_never_followed_out(
        small_index: tuple, saved_dir: Path, tmp_path: Path, record_property: Callable) -> None:
    """An index directory whose manifest.json, generation folder or a data file is a symlink to
    outside it, or whose manifest names generation "../outside/victim"; load and save over it each
    time.

    Checks: load rejects the "../victim" generation; saving over the directory replaces the
    links themselves, never writes or deletes anything outside; the result loads.
    """
    index, _, _ = small_index
    outside = tmp_path / "outside"
    generation = json.loads((saved_dir / MANIFEST).read_text())["generation"]
    shutil.copytree(saved_dir / generation, outside / "generation")
    shutil.copy(saved_dir / MANIFEST, outside / MANIFEST)
    (outside / "victim").mkdir()
    (outside / "victim" / "keep.txt").write_text("keep me")

    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(outside)): p.read_bytes()
                for p in sorted(outside.rglob("*")) if p.is_file()}

    before = snapshot()
    shutil.rmtree(saved_dir / generation)
    (saved_dir / generation).symlink_to(outside / "generation", target_is_directory=True)
    (saved_dir / MANIFEST).unlink()
    (saved_dir / MANIFEST).symlink_to(outside / MANIFEST)
    assert len(HybridIndex.load(saved_dir, index.m3)) == 4  # links to identical, verified data
    index.save(saved_dir)
    assert snapshot() == before and not (saved_dir / MANIFEST).is_symlink()

    manifest = json.loads((saved_dir / MANIFEST).read_text())
    data = saved_dir / manifest["generation"] / "dense.npy"
    data.unlink()
    data.symlink_to(outside / "generation" / "dense.npy")
    index.save(saved_dir)  # removes the generation that holds the link
    assert snapshot() == before

    manifest = json.loads((saved_dir / MANIFEST).read_text())
    manifest["generation"] = "../outside/victim"
    (saved_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexFileError, match="bad 'generation'"):
        HybridIndex.load(saved_dir, index.m3)
    index.save(saved_dir)
    assert snapshot() == before
    assert len(HybridIndex.load(saved_dir, index.m3)) == 4
    record_property("held", "no file outside the index directory was written or deleted")
