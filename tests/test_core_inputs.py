"""Bad input, loading errors, devices/dtypes and concurrency of the core embedder."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bge_integrations import BGEEmbedder, ModelNotFoundError
from bge_integrations.core.hardware import resolve_device, resolve_dtype


def test_empty_list_gives_zero_rows(bert_embedder: BGEEmbedder) -> None:
    for method in (bert_embedder.encode, bert_embedder.encode_queries,
                   bert_embedder.encode_documents):
        out = method([])
        assert out.shape == (0, bert_embedder.dim) and out.dtype == np.float32


def test_empty_string_is_embedded(bert_embedder: BGEEmbedder) -> None:
    out = bert_embedder.encode(["", "text"])
    assert out.shape == (2, bert_embedder.dim)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("texts", "match"), [
    (["ok", None], r"texts\[1\] must be a str, got NoneType"),
    ([1, "ok"], r"texts\[0\] must be a str, got int"),
    ([b"bytes"], r"texts\[0\] must be a str, got bytes"),
    ("a single string", "got a single str"),
    (None, "must be a list of strings, got NoneType"),
    (42, "must be a list of strings, got int"),
    ({"a": 1}, "must be a list of strings, got dict"),
])
def test_bad_inputs_raise_type_error_naming_the_element(bert_embedder: BGEEmbedder, texts,
                                                        match: str) -> None:
    with pytest.raises(TypeError, match=match):
        bert_embedder.encode(texts)


def test_queries_error_names_queries(bert_embedder: BGEEmbedder) -> None:
    with pytest.raises(TypeError, match=r"queries\[2\]"):
        bert_embedder.encode_queries(["a", "b", 3])


def test_tuples_and_generators_are_accepted(bert_embedder: BGEEmbedder) -> None:
    want = bert_embedder.encode(["a", "b"])
    np.testing.assert_allclose(bert_embedder.encode(("a", "b")), want, atol=1e-5)
    np.testing.assert_allclose(bert_embedder.encode(t for t in ["a", "b"]), want, atol=1e-5)


def test_over_long_text_is_truncated_to_the_configured_length(tiny_bert: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu", passage_max_length=16)
    long_text = "panda " * 1000
    tokens = emb.tokenizer(long_text, truncation=True, max_length=16)["input_ids"]
    prefix_text = emb.tokenizer.decode(tokens[1:-1])
    np.testing.assert_allclose(emb.encode_documents([long_text]),
                               emb.encode_documents([prefix_text]), atol=1e-5)
    assert emb.encode([long_text], max_length=8).shape == (1, emb.dim)


def test_max_texts_per_call_is_enforced(tiny_bert: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu", max_texts_per_call=2)
    with pytest.raises(ValueError, match="max_texts_per_call=2"):
        emb.encode(["a", "b", "c"])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"batch_size": 0}, "batch_size"),
    ({"max_batch_tokens": -1}, "max_batch_tokens"),
    ({"query_max_length": 0}, "query_max_length"),
    ({"dtype": "float64"}, "Unknown dtype"),
    ({"device": "tpu:9"}, "Invalid device"),
    ({"pooling": "max"}, "valid values"),
])
def test_bad_options(tiny_bert: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BGEEmbedder(tiny_bert, **kwargs)


def test_output_dtype_float16(bert_embedder: BGEEmbedder) -> None:
    half = bert_embedder.encode(["a b"], output_dtype="float16")
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, bert_embedder.encode(["a b"]), atol=2e-3)
    with pytest.raises(ValueError, match="output_dtype"):
        bert_embedder.encode(["a"], output_dtype="int4")


def test_encode_iter_streams_in_order(bert_embedder: BGEEmbedder) -> None:
    docs = [f"document number {i}" for i in range(25)]
    chunks = list(bert_embedder.encode_iter(iter(docs), chunk_size=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    np.testing.assert_allclose(np.concatenate(chunks), bert_embedder.encode_documents(docs),
                               atol=1e-5)
    with pytest.raises(TypeError, match="single str"):
        list(bert_embedder.encode_iter("abc"))


def test_unknown_model_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="pooling="):
        BGEEmbedder("nobody/not-a-model")


def test_missing_model_lists_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="Hugging Face cache.*HF_HUB_OFFLINE"):
        BGEEmbedder("nobody/not-a-model", pooling="mean")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        BGEEmbedder("/definitely/missing/dir", pooling="cls")


def test_packaged_minilm_resolves_by_hub_id(monkeypatch: pytest.MonkeyPatch,
                                            minilm_dir: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = BGEEmbedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    assert emb.spec.pooling.value == "mean" and emb.dim == 384
    np.testing.assert_allclose(emb.encode(["hi"]),
                               BGEEmbedder(minilm_dir, pooling="mean").encode(["hi"]), atol=1e-5)


def test_remote_code_is_refused_unless_asked(tiny_bert: str, tmp_path) -> None:
    path = tmp_path / "gte-base-en-v1.5"  # registry: needs trust_remote_code
    shutil.copytree(tiny_bert, path)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        BGEEmbedder(str(path))
    # Custom code shipped in a checkpoint never runs without trust_remote_code=True.
    custom = tmp_path / "custom-code-model"
    shutil.copytree(tiny_bert, custom)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    emb = BGEEmbedder(str(custom), pooling="cls")  # loads the built-in BERT class instead
    assert type(emb._loaded.model).__name__ == "BertModel"


def test_weights_are_shared_between_embedders(tiny_bert: str) -> None:
    a = BGEEmbedder(tiny_bert, device="cpu")
    b = BGEEmbedder(tiny_bert, device="cpu", pooling="mean", query_instruction="")
    assert a._loaded is b._loaded


def test_device_and_dtype_resolution() -> None:
    cpu = resolve_device("auto")
    assert cpu.type in {"cpu", "cuda", "mps"}
    assert resolve_dtype("auto", resolve_device("cpu")) == "float32"
    import torch

    assert resolve_dtype("auto", torch.device("cuda")) == "float16"
    assert resolve_dtype(torch.float32, resolve_device("cpu")) == "float32"


def test_threads_get_the_same_numbers_as_serial_calls(tiny_bert: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu", max_batch_tokens=64)
    inputs = [[f"thread {i} text {j} " * (j + 1) for j in range(6)] for i in range(16)]
    serial = [emb.encode_queries(batch) for batch in inputs]
    barrier = threading.Barrier(8)

    def work(i: int) -> np.ndarray:
        if i < 8:
            barrier.wait()
        return emb.encode_queries(inputs[i])

    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(work, range(16)))
    for s, p in zip(serial, parallel, strict=True):
        np.testing.assert_allclose(p, s, atol=1e-5)


def test_asyncio_calls_via_threads(tiny_bert: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu")
    texts = [[f"async {i}"] for i in range(20)]

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(asyncio.to_thread(emb.encode, t) for t in texts))

    results = asyncio.run(main())
    for t, r in zip(texts, results, strict=True):
        np.testing.assert_allclose(r, emb.encode(t), atol=1e-5)


def test_int8_dynamic_quantization_is_explicit_and_close(tiny_bert: str) -> None:
    fp32 = BGEEmbedder(tiny_bert, device="cpu")
    int8 = BGEEmbedder(tiny_bert, device="cpu", dtype="int8")
    assert int8.dtype == "int8" and fp32.dtype == "float32"
    a, b = fp32.encode(["a panda"]), int8.encode(["a panda"])
    assert float((a @ b.T)[0, 0]) > 0.98


def test_bfloat16_on_a_cpu_without_native_bf16_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    import torch

    from bge_integrations.core import hardware

    cpu = torch.device("cpu")
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.warns(UserWarning, match="without native bf16"):
        assert resolve_dtype("bfloat16", cpu) == "bfloat16"
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_dtype("bfloat16", cpu) == "bfloat16"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_dtype("int8", torch.device("cuda"))


def test_max_tokens_per_call_is_enforced_before_any_forward_pass(tiny_bert: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu", max_tokens_per_call=20, passage_max_length=16)
    assert emb.encode(["a b c"]).shape == (1, emb.dim)
    with pytest.raises(ValueError, match="max_tokens_per_call=20"):
        emb.encode(["panda " * 100, "panda " * 100])


def test_path_objects_are_accepted(tiny_bert: str) -> None:
    from pathlib import Path

    emb = BGEEmbedder(Path(tiny_bert), device="cpu")
    assert emb.model_name == tiny_bert
    np.testing.assert_allclose(emb.encode(["a"]), BGEEmbedder(tiny_bert).encode(["a"]), atol=1e-5)


def test_lone_surrogates_are_rejected_with_the_index(bert_embedder: BGEEmbedder) -> None:
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode"):
        bert_embedder.encode(["fine", "bad \ud800 text"])
