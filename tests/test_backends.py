"""Backends: ONNX Runtime and OpenVINO give the torch backend's outputs; cache; bad input."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bge_integrations import BGEEmbedder, BGEM3Embedder
from bge_integrations.backends import BackendExportError
from bge_integrations.backends.calibration import calibration_key
from bge_integrations.core.loading import clear_model_cache

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

RUNTIMES = ["onnx", "openvino"]
TEXTS = ["BGE embeds text.", "x", "a much longer text about retrieval and embeddings " * 6,
         "médium sized sentence, with punctuation!", "query: what is a backbone?"]


@pytest.fixture(scope="module", autouse=True)
def graph_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Exported graphs of this module go to a cache of their own."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("graph-cache")
    mp.setenv("BGE_INTEGRATIONS_CACHE", str(cache))
    yield cache
    mp.undo()


#: tests here clear the model cache to force fresh loads (see conftest.restore_model_cache)
pytestmark = pytest.mark.usefixtures("restore_model_cache")


def _close(a: np.ndarray, b: np.ndarray, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(a, b, atol=atol, rtol=0)


@pytest.mark.parametrize("backend", RUNTIMES)
def test_bert_cls_parity(tiny_bert: str, bert_embedder: BGEEmbedder, backend: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu", backend=backend)
    assert emb.backend == backend and emb._loaded.model is None  # no torch weights kept
    _close(emb.encode_queries(TEXTS), bert_embedder.encode_queries(TEXTS))
    _close(emb.encode_documents(TEXTS[:1]), bert_embedder.encode_documents(TEXTS[:1]))


@pytest.mark.parametrize("backend", RUNTIMES)
def test_m3_heads_parity(tiny_m3: str, m3: BGEM3Embedder, backend: str) -> None:
    other = BGEM3Embedder(tiny_m3, device="cpu", backend=backend)
    mine = other.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)
    ref = m3.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)
    _close(mine.dense, ref.dense)
    for got, want in zip(mine.sparse, ref.sparse, strict=False):
        assert got.keys() == want.keys()
        _close(np.array(list(got.values())), np.array([want[k] for k in got]))
    for got, want in zip(mine.colbert, ref.colbert, strict=False):
        assert got.shape == want.shape
        _close(got, want)
    scores = other.compute_score(("BGE embeds text.", TEXTS[2]))
    expected = m3.compute_score(("BGE embeds text.", TEXTS[2]))
    assert scores == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_decoder_last_token_parity(tiny_icl: str) -> None:
    path = tiny_icl  # bge-en-icl-shaped Mistral, left padding, ICL query prompt
    ref = BGEEmbedder(path, device="cpu")
    for backend in RUNTIMES:
        emb = BGEEmbedder(path, device="cpu", backend=backend)
        _close(emb.encode_queries(TEXTS), ref.encode_queries(TEXTS))
        _close(emb.encode_documents(TEXTS), ref.encode_documents(TEXTS))


@pytest.mark.slow
def test_minilm_parity_and_int8(minilm_dir: str) -> None:
    ref = BGEEmbedder(minilm_dir, device="cpu", pooling="mean").encode(TEXTS)
    for backend in RUNTIMES:
        emb = BGEEmbedder(minilm_dir, device="cpu", pooling="mean", backend=backend)
        _close(emb.encode(TEXTS), ref)
        int8 = BGEEmbedder(minilm_dir, device="cpu", pooling="mean", backend=backend,
                           dtype="int8").encode(TEXTS)
        assert np.min(np.sum(int8 * ref, axis=1)) > 0.95  # cosine to float32; STS below


@pytest.mark.parametrize("backend", RUNTIMES)
def test_int8_runs_quantized_graph(tiny_bert: str, bert_embedder: BGEEmbedder,
                                   backend: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu", backend=backend, dtype="int8")
    assert emb.dtype == "int8"
    got, want = emb.encode(TEXTS), bert_embedder.encode(TEXTS)
    assert np.abs(got - want).max() > 1e-7  # really quantized
    assert np.min(np.sum(got * want, axis=1)) > 0.99


def _graph_dirs(cache: Path) -> list[Path]:
    return [d for d in (cache / "graphs").iterdir() if (d / "manifest.json").is_file()]


def _graph_of(cache: Path, model_dir: str, **parts: str) -> Path:
    """The cached graph of ``model_dir`` whose key parts include ``parts``."""
    (found,) = [d for d in _graph_dirs(cache) if d.name.startswith(Path(model_dir).name + "-")
                and parts.items() <= json.loads((d / "manifest.json").read_text())["parts"].items()]
    return found


def _onnx_graph(graph_dir: Path) -> Any:
    import onnx

    return onnx.load(str(graph_dir / "model.onnx"), load_external_data=False)


def test_attention_is_one_node_per_layer(graph_cache: Path, tiny_bert: str, tiny_icl: str
                                         ) -> None:
    """Encoders export at opset 23, attention as ONNX ``Attention`` nodes (one fused kernel in
    ONNX Runtime, ``ScaledDotProductAttention`` in OpenVINO); rotary decoders fall back to
    opset 18, whose graph ONNX Runtime runs (the parity tests above check both)."""
    from bge_integrations.backends.export import ROTARY_OPSET

    BGEEmbedder(tiny_bert, device="cpu", backend="onnx")
    BGEEmbedder(tiny_bert, device="cpu", backend="openvino")
    encoder = _onnx_graph(_graph_of(graph_cache, tiny_bert, stage="export"))
    ops = {node.op_type for node in encoder.graph.node}
    assert "Attention" in ops and "Softmax" not in ops
    ir = _graph_of(graph_cache, tiny_bert, backend="openvino", dtype="float32")
    assert 'type="ScaledDotProductAttention"' in (ir / "model.xml").read_text()
    BGEEmbedder(tiny_icl, device="cpu", backend="onnx")
    decoder = _onnx_graph(_graph_of(graph_cache, tiny_icl, stage="export"))
    assert {o.domain: o.version for o in decoder.opset_import}[""] == ROTARY_OPSET
    assert "RotaryEmbedding" not in {node.op_type for node in decoder.graph.node}


def test_exports_ignore_files_in_the_working_directory(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       tiny_bert: str,
                                                       bert_embedder: BGEEmbedder) -> None:
    """onnx refuses to write external data whose file name exists in the current directory;
    a user's own ``model.onnx.data`` (or any name an export step uses) must not matter."""
    work = tmp_path / "cwd"
    work.mkdir()
    for name in ("model.onnx", "model.onnx.data", "fused.onnx.data", "model.xml", "model.bin"):
        (work / name).write_bytes(b"user file")
    monkeypatch.chdir(work)
    monkeypatch.setenv("BGE_INTEGRATIONS_CACHE", str(tmp_path / "cache"))
    clear_model_cache()
    want = bert_embedder.encode(TEXTS)
    for backend in RUNTIMES:
        for dtype in ("float32", "int8"):
            got = BGEEmbedder(tiny_bert, device="cpu", backend=backend, dtype=dtype).encode(TEXTS)
            assert np.min(np.sum(got * want, axis=1)) > 0.99
    assert all((work / n).read_bytes() == b"user file" for n in os.listdir(work))


def test_damaged_cached_graph_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         graph_cache: Path, tiny_bert: str,
                                         bert_embedder: BGEEmbedder) -> None:
    BGEEmbedder(tiny_bert, device="cpu", backend="onnx")  # in the module's cache
    shutil.copytree(graph_cache, tmp_path, dirs_exist_ok=True)  # damage a copy of it
    monkeypatch.setenv("BGE_INTEGRATIONS_CACHE", str(tmp_path))
    graph = _graph_of(tmp_path, tiny_bert, backend="onnx", dtype="float32")
    (data,) = graph.glob("*.data")  # the weights, under the fresh name the export gave them
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte in a weight
    data.write_bytes(bytes(damaged))
    clear_model_cache()
    emb = BGEEmbedder(tiny_bert, device="cpu", backend="onnx")
    _close(emb.encode(TEXTS), bert_embedder.encode(TEXTS))
    assert all(p.read_bytes() != bytes(damaged) for p in graph.glob("*.data"))  # rebuilt
    (graph / "manifest.json").write_text("{not json")
    clear_model_cache()
    _close(BGEEmbedder(tiny_bert, device="cpu", backend="onnx").encode(TEXTS),
           bert_embedder.encode(TEXTS))
    assert json.loads((graph / "manifest.json").read_text())["files"]


def test_missing_extra_names_it(tiny_bert: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clear_model_cache()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'bge-integrations\[onnx\]'"):
        BGEEmbedder(tiny_bert, device="cpu", backend="onnx")
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"bge-integrations\[openvino\]"):
        BGEEmbedder(tiny_bert, device="cpu", backend="openvino")


def test_export_failure_suggests_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       tiny_bert: str) -> None:
    import torch

    monkeypatch.setenv("BGE_INTEGRATIONS_CACHE", str(tmp_path))
    clear_model_cache()

    def unsupported(*args: object, **kwargs: object) -> None:
        msg = "unsupported operator aten::fancy"
        raise RuntimeError(msg)

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    with pytest.raises(BackendExportError, match=r"backend='torch'.*|aten::fancy"):
        BGEEmbedder(tiny_bert, device="cpu", backend="onnx")
    assert not _graph_dirs(tmp_path)  # nothing half-built is left to load


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"backend": "tensorrt"}, "valid values: 'torch', 'onnx', 'openvino', 'auto'"),
    ({"backend": "onnx", "dtype": "bfloat16"}, "use backend='torch' for float16/bfloat16"),
    ({"backend": "openvino", "device": "cuda:0"}, "runs on the CPU"),
])
def test_bad_backend_options(tiny_bert: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BGEEmbedder(tiny_bert, **kwargs)


def test_auto_measures_once_then_remembers(graph_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                           tiny_bert: str, bert_embedder: BGEEmbedder) -> None:
    from bge_integrations.backends import auto

    (graph_cache / auto.CHOICE_FILE).unlink(missing_ok=True)
    clear_model_cache()
    emb = BGEEmbedder(tiny_bert, device="cpu", backend="auto")
    choices = json.loads((graph_cache / auto.CHOICE_FILE).read_text())
    (record,) = choices.values()
    assert set(record["seconds"]) == {"torch", "onnx", "openvino"}
    fastest = min(record["seconds"], key=record["seconds"].get)
    assert emb.backend == record["backend"] == fastest
    _close(emb.encode(TEXTS), bert_embedder.encode(TEXTS))
    clear_model_cache()

    def no_timing(*args: object) -> float:
        raise AssertionError("the remembered choice is used")

    monkeypatch.setattr(auto, "time_backend", no_timing)
    assert BGEEmbedder(tiny_bert, device="cpu", backend="auto").backend == fastest


def test_auto_keeps_torch_off_cpu_dtypes(tiny_bert: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu", backend="auto", dtype="bfloat16")
    assert emb.backend == "torch" and emb.dtype == "bfloat16"


def test_adapters_take_backend(tiny_bert: str, bert_embedder: BGEEmbedder) -> None:
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from bge_integrations.langchain import BGEEmbeddings
    from bge_integrations.llama_index import BGEEmbedding

    want = bert_embedder.encode_documents(TEXTS[:2])
    lc = BGEEmbeddings(model_name=tiny_bert, device="cpu", backend="onnx")
    _close(np.array(lc.embed_documents(TEXTS[:2])), want)
    li = BGEEmbedding(model_name=tiny_bert, device="cpu", backend="openvino")
    _close(np.array(li.get_text_embedding_batch(TEXTS[:2])), want)


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "dtype"), [
    ("onnx", "int8"), ("openvino", "int8"), ("openvino", "int8-static"), ("torch", "int8"),
    ("torch", "bfloat16")])
def test_low_precision_keeps_sts(minilm_dir: str, sts_dev: tuple, backend: str,
                                 dtype: str) -> None:
    """int8 and bf16 lose at most 0.5 STS-B dev Spearman points (x100) with MiniLM."""
    from scipy.stats import spearmanr

    from bge_integrations.cli.demo import load_corpus
    from bge_integrations.core.hardware import cpu_has_native_bf16

    if dtype == "bfloat16" and not cpu_has_native_bf16():
        pytest.skip("bfloat16 runs only on CPUs with native bf16")
    s1, s2, gold = sts_dev
    static = {}
    if dtype == "int8-static":  # calibrated on the package's 40 texts about embeddings
        pytest.importorskip("nncf")
        dtype, static = "int8", {"int8_calibration": [doc.text for doc in load_corpus()]}
    emb = BGEEmbedder(minilm_dir, device="cpu", pooling="mean", backend=backend, dtype=dtype,
                      **static)
    cosine = np.sum(emb.encode(s1) * emb.encode(s2), axis=1)
    assert 100 * spearmanr(cosine, gold).statistic >= 86.72 - 0.5  # float32: 86.72


@pytest.mark.parametrize(("flags", "native"), [
    ({"avx2", "fma"}, False), ({"avx512f", "avx512_vnni"}, False),
    ({"avx512f", "avx512_bf16"}, True), ({"amx_tile", "amx_bf16"}, True)])
def test_bf16_decision_reads_cpu_flags(monkeypatch: pytest.MonkeyPatch, flags: set[str],
                                       native: bool) -> None:
    """dtype='auto' stays float32 on every CPU (never bf16, AVX2-only or not); an explicit
    bfloat16 warns where the CPU has no native bf16."""
    import warnings

    import torch

    from bge_integrations.core import hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    cpu = torch.device("cpu")
    assert hardware.cpu_has_native_bf16() is native
    assert hardware.resolve_dtype("auto", cpu) == "float32"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert hardware.resolve_dtype("bfloat16", cpu) == "bfloat16"
    assert bool(caught) is not native


@pytest.mark.parametrize("backend", RUNTIMES)
def test_encoder_reranker_parity(tiny_reranker: str, backend: str) -> None:
    from bge_integrations import BGEReranker

    pairs = [("what is BGE?", TEXTS[0]), ("what is BGE?", TEXTS[2]), ("x", "y")]
    ref = BGEReranker(tiny_reranker, device="cpu")
    other = BGEReranker(tiny_reranker, device="cpu", backend=backend)
    assert other.backend == backend and other._loaded.model is None
    _close(other.compute_score(pairs), ref.compute_score(pairs))
    _close(other.compute_score(pairs, normalize=True), ref.compute_score(pairs, normalize=True))
    ranked, expected = other.rerank("what is BGE?", TEXTS), ref.rerank("what is BGE?", TEXTS)
    _close(np.array([score for _, score in ranked]), np.array([score for _, score in expected]))


def test_llm_reranker_refuses_runtime_backends(tiny_llm_reranker: str) -> None:
    from bge_integrations import BGEReranker

    with pytest.raises(ValueError, match=r"runs encoder rerankers.*backend='torch'"):
        BGEReranker(tiny_llm_reranker, device="cpu", backend="onnx")
    assert BGEReranker(tiny_llm_reranker, device="cpu", backend="auto").backend == "torch"


# -- static int8 (OpenVINO + NNCF, calibration texts) -----------------------------------------
CALIBRATION = [f"calibration text {i}: embeddings map passages and queries to vectors "
               * (1 + i % 4) for i in range(24)]


def _fake_quantize_count(graph_dir: Path) -> int:
    return (graph_dir / "model.xml").read_text().count('type="FakeQuantize"')


def test_static_int8_quantizes_every_product(graph_cache: Path, tiny_bert: str,
                                             bert_embedder: BGEEmbedder) -> None:
    pytest.importorskip("nncf")
    static = BGEEmbedder(tiny_bert, device="cpu", backend="openvino", dtype="int8",
                         int8_calibration=CALIBRATION)
    dynamic = BGEEmbedder(tiny_bert, device="cpu", backend="openvino", dtype="int8")
    assert static._loaded is not dynamic._loaded
    graph = _graph_of(graph_cache, tiny_bert, backend="openvino", dtype="int8",
                      calibration=calibration_key(tuple(CALIBRATION)))
    # activations feeding the 6 products of each layer (q, k, v, attention out, two
    # feed-forward) and attention's two matrix products get fixed int8 scales
    layers = static._loaded.config.num_hidden_layers
    assert _fake_quantize_count(graph) >= 6 * layers
    got, want = static.encode(TEXTS), bert_embedder.encode(TEXTS)
    assert np.abs(got - want).max() > 1e-7  # really quantized
    assert np.min(np.sum(got * want, axis=1)) > 0.98
    assert np.abs(got - dynamic.encode(TEXTS)).max() > 1e-7  # not the dynamic graph
    _close(static.encode(TEXTS[::-1]), got[::-1])  # fixed scales: batch-independent


def test_static_int8_m3_heads(tiny_m3: str, m3: BGEM3Embedder) -> None:
    pytest.importorskip("nncf")
    static = BGEM3Embedder(tiny_m3, device="cpu", backend="openvino", dtype="int8",
                           int8_calibration=CALIBRATION)
    got = static.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)
    want = m3.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)
    assert np.min(np.sum(got.dense * want.dense, axis=1)) > 0.999
    for mine, ref in zip(got.colbert, want.colbert, strict=True):
        assert mine.shape == ref.shape
        assert np.min(np.sum(mine * ref, axis=1)) > 0.999
    for mine, ref in zip(got.sparse, want.sparse, strict=True):  # weights near; tiny ones may
        for token in set(mine) | set(ref):                      # cross zero (relu)
            assert abs(mine.get(token, 0.0) - ref.get(token, 0.0)) < 0.03
        assert {t for t, w in ref.items() if w > 0.05} <= set(mine)


def test_calibration_is_part_of_the_graph_key(graph_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                              tiny_bert: str) -> None:
    pytest.importorskip("nncf")
    from bge_integrations.backends import calibration

    first = BGEEmbedder(tiny_bert, device="cpu", backend="openvino", dtype="int8",
                        int8_calibration=CALIBRATION).encode(TEXTS)
    other = BGEEmbedder(tiny_bert, device="cpu", backend="openvino", dtype="int8",
                        int8_calibration=CALIBRATION[:3]).encode(TEXTS)
    assert np.abs(first - other).max() > 1e-7  # other texts, other scales, other graph
    clear_model_cache()

    def no_quantization(*args: object) -> None:
        raise AssertionError("the cached static graph is reused")

    monkeypatch.setattr(calibration, "quantize_static", no_quantization)
    again = BGEEmbedder(tiny_bert, device="cpu", backend="openvino", dtype="int8",
                        int8_calibration=list(CALIBRATION))
    _close(again.encode(TEXTS), first)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"backend": "torch", "dtype": "int8"}, ValueError, r"backend='openvino'.*got backend='torch'"),
    ({"backend": "onnx", "dtype": "int8"}, ValueError, r"got backend='onnx'"),
    ({"backend": "auto", "dtype": "int8"}, ValueError, r"got backend='auto'"),
    ({"backend": "openvino"}, ValueError, r"dtype='float32'"),
    ({"backend": "openvino", "dtype": "int8", "int8_calibration": []}, ValueError,
     "at least one non-empty text"),
    ({"backend": "openvino", "dtype": "int8", "int8_calibration": ["", "  "]}, ValueError,
     "at least one non-empty text"),
    ({"backend": "openvino", "dtype": "int8", "int8_calibration": "one text"}, TypeError,
     "wrap it in a list"),
    ({"backend": "openvino", "dtype": "int8", "int8_calibration": ["ok", None]}, TypeError,
     r"int8_calibration\[1\] must be a str"),
])
def test_bad_calibration(tiny_bert: str, kwargs: dict, error: type, match: str) -> None:
    kwargs = {"int8_calibration": CALIBRATION, **kwargs}
    with pytest.raises(error, match=match):
        BGEEmbedder(tiny_bert, device="cpu", **kwargs)


def test_calibration_without_nncf_names_the_extra(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  tiny_bert: str) -> None:
    monkeypatch.setenv("BGE_INTEGRATIONS_CACHE", str(tmp_path))
    clear_model_cache()
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ImportError, match=r"needs nncf.*bge-integrations\[openvino\]"):
        BGEEmbedder(tiny_bert, device="cpu", backend="openvino", dtype="int8",
                    int8_calibration=CALIBRATION)
    assert not [d for d in _graph_dirs(tmp_path) if "calibration" in (d / "manifest.json")
                .read_text()]  # nothing half-built is left


def test_adapters_take_calibration(tiny_bert: str) -> None:
    pytest.importorskip("nncf")
    pytest.importorskip("langchain_core")
    import pickle

    from bge_integrations.langchain import BGEEmbeddings

    options = {"model_name": tiny_bert, "device": "cpu", "backend": "openvino",
               "dtype": "int8", "int8_calibration": CALIBRATION}
    lc = BGEEmbeddings(**options)
    want = BGEEmbedder(tiny_bert, device="cpu", backend="openvino", dtype="int8",
                       int8_calibration=CALIBRATION).encode_documents(TEXTS[:2])
    _close(np.array(lc.embed_documents(TEXTS[:2])), want)
    copy = pickle.loads(pickle.dumps(lc))
    assert copy.int8_calibration == CALIBRATION
    _close(np.array(copy.embed_documents(TEXTS[:2])), want)


def test_static_int8_bounds_openvino_shape_caches(monkeypatch: pytest.MonkeyPatch,
                                                  tiny_bert: str) -> None:
    """Static int8 graphs keep at most 64 compiled shapes (their kernels otherwise grew to
    GBs over a long call); float32 and dynamic int8 keep OpenVINO's defaults."""
    pytest.importorskip("nncf")
    from bge_integrations.backends import runtime_backbones

    configs: list[int | None] = []
    real_init = runtime_backbones.OpenVinoBackbone.__init__

    def recording_init(self: Any, path: Path, **kwargs: Any) -> None:
        configs.append(kwargs.get("shape_cache"))
        real_init(self, path, **kwargs)

    monkeypatch.setattr(runtime_backbones.OpenVinoBackbone, "__init__", recording_init)
    clear_model_cache()
    BGEEmbedder(tiny_bert, device="cpu", backend="openvino")
    BGEEmbedder(tiny_bert, device="cpu", backend="openvino", dtype="int8")
    static = BGEEmbedder(tiny_bert, device="cpu", backend="openvino", dtype="int8",
                         int8_calibration=CALIBRATION)
    assert configs == [None, None, runtime_backbones.STATIC_INT8_SHAPE_CACHE]
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" in os.environ
    assert static.encode(TEXTS).shape == (len(TEXTS), static.dim)


def test_openvino_runs_one_request_at_a_time_on_every_thread(tiny_bert: str,
                                                              bert_embedder: BGEEmbedder
                                                              ) -> None:
    """One stream on all of torch's threads, the callers taking turns: two streams side by
    side gave a wrong row in about 1 of 11 fresh processes' first calls (a batch whose shape
    was new to the process; benchmarks/stress_first_call.py). Calls from many threads at
    once still give each caller its own rows."""
    import threading

    import torch

    emb = BGEEmbedder(tiny_bert, device="cpu", backend="openvino")
    compiled = emb._loaded.backbone._compiled
    assert int(compiled.get_property("NUM_STREAMS")) == 1
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == torch.get_num_threads()
    # its own token budget (bigger batches suit one inference on every thread); yours wins
    assert emb._engine.max_batch_tokens == emb._loaded.backbone.batch_tokens == 1024
    assert bert_embedder._engine.max_batch_tokens == 512
    mine = BGEEmbedder(tiny_bert, device="cpu", backend="openvino", max_batch_tokens=300)
    assert mine._engine.max_batch_tokens == 300
    batches = [[f"text {i} " * (1 + i % 7) + t for t in TEXTS] for i in range(8)]
    got: dict[int, np.ndarray] = {}

    def encode(i: int) -> None:
        got[i] = emb.encode_documents(batches[i])

    threads = [threading.Thread(target=encode, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, batch in enumerate(batches):
        _close(got[i], bert_embedder.encode_documents(batch))
