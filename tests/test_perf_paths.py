"""Performance code paths: side-by-side CPU batches, the lean encoder pass, int8.

Each must leave the numbers as they are (float32: within float rounding of the plain forward)
or, for int8, keep STS-B quality within half a point.
"""

from __future__ import annotations

import csv
import gc
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from bge_integrations import BGEEmbedder, BGEM3Embedder
from bge_integrations.core.engine import Engine
from bge_integrations.core.lean_encoder import lean_encoder
from bge_integrations.core.loading import LoadedModel, forget_model, load_model, quantize_int8

STS_DEV = Path(__file__).parent / "data" / "sts-dev.csv"
#: all-MiniLM-L6-v2, mean pooling, float32, x100 (sentence-transformers gives the same)
FP32_SPEARMAN = 86.72


def test_int8_quantizes_every_linear_with_per_channel_weights(tiny_bert: str) -> None:
    model = load_model(tiny_bert, device="cpu", dtype="int8").model
    plain = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    assert plain == []
    quantized = [m for m in model.modules()
                 if type(m).__name__ == "Linear" and hasattr(m, "weight") and callable(m.weight)]
    assert quantized
    assert all(m.weight().qscheme() == torch.per_channel_affine for m in quantized)


def _mapped(path: Path) -> bool:
    target = str(path.resolve())
    return any(line.endswith(target) for line in Path("/proc/self/maps").read_text().splitlines())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's memory maps")
def test_int8_releases_the_float32_checkpoint_from_memory(tiny_bert: str, tmp_path: Path
                                                          ) -> None:
    # a private copy: float32 loads of the shared tiny model elsewhere keep that one mapped
    checkpoint = Path(shutil.copytree(tiny_bert, tmp_path / "bert"))
    weights = checkpoint / "model.safetensors"
    float32 = load_model(str(checkpoint), device="cpu", dtype="float32")
    ids = torch.tensor([[101, 7, 8, 9, 102]])
    mask = torch.ones_like(ids)
    int8 = load_model(str(checkpoint), device="cpu", dtype="int8")
    with torch.inference_mode():  # (an autograd graph would hold the weights)
        want, got = float32.backbone(ids, mask), int8.backbone(ids, mask)
    assert torch.nn.functional.cosine_similarity(got[0], want[0], dim=-1).min() > 0.99
    forget_model(float32)
    del float32
    gc.collect()
    assert not _mapped(weights)  # the int8 model holds no view of the checkpoint's file
    forget_model(int8)


def test_quantize_int8_keeps_tied_tensors_tied() -> None:
    net = torch.nn.ModuleDict({"a": torch.nn.LayerNorm(8), "b": torch.nn.LayerNorm(8),
                               "out": torch.nn.Linear(8, 8)})
    net["b"].weight = net["a"].weight
    quantize_int8(net)
    assert net["b"].weight is net["a"].weight
    assert type(net["out"]) is not torch.nn.Linear


def test_quantize_int8_keeps_the_output_close() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 8))
    x = torch.randn(16, 64)
    want = net(x)
    got = quantize_int8(net)(x)
    assert torch.nn.functional.cosine_similarity(got, want, dim=-1).min() > 0.99


@pytest.mark.slow
def test_int8_sts_spearman_within_half_a_point_of_float32(minilm_dir: str) -> None:
    from scipy.stats import spearmanr

    rows = []
    with STS_DEV.open(encoding="utf-8") as f:
        for fields in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            rows.append((float(fields[4]), fields[5], fields[6]))
    gold = np.array([r[0] for r in rows])
    emb = BGEEmbedder(minilm_dir, pooling="mean", device="cpu", dtype="int8",
                      passage_max_length=256)
    a = emb.encode_documents([r[1] for r in rows])
    b = emb.encode_documents([r[2] for r in rows])
    spearman = 100 * spearmanr((a * b).sum(axis=1), gold).statistic
    assert FP32_SPEARMAN - spearman < 0.5, spearman


# -- side-by-side batches (num_workers) -------------------------------------------------------
MIXED = [("panda " * (1 + (i * 7) % 60)).strip() for i in range(120)]


def test_workers_give_the_vectors_of_one_worker(tiny_bert: str) -> None:
    serial = BGEEmbedder(tiny_bert, device="cpu", max_batch_tokens=96, num_workers=1)
    want = serial.encode_documents(MIXED)
    for workers in (2, 3):
        emb = BGEEmbedder(tiny_bert, device="cpu", max_batch_tokens=96, num_workers=workers)
        np.testing.assert_allclose(emb.encode_documents(MIXED), want, atol=1e-5)


def test_m3_workers_keep_every_output_in_input_order(tiny_m3: str) -> None:
    serial = BGEM3Embedder(tiny_m3, device="cpu", max_batch_tokens=96, num_workers=1)
    side = BGEM3Embedder(tiny_m3, device="cpu", max_batch_tokens=96, num_workers=2)
    a = serial.encode_documents(MIXED, colbert=True)
    b = side.encode_documents(MIXED, colbert=True)
    np.testing.assert_allclose(b.dense, a.dense, atol=1e-5)
    for x, y in zip(a.colbert, b.colbert, strict=False):
        np.testing.assert_allclose(y, x, atol=1e-5)
    for x, y in zip(a.sparse, b.sparse, strict=False):
        assert x.keys() == y.keys()
        np.testing.assert_allclose(list(y.values()), list(x.values()), rtol=1e-5, atol=1e-7)


def test_workers_leave_torch_threads_as_they_were(tiny_bert: str) -> None:
    before = torch.get_num_threads()
    emb = BGEEmbedder(tiny_bert, device="cpu", max_batch_tokens=64, num_workers=2)
    emb.encode_documents(MIXED)
    assert torch.get_num_threads() == before
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert seen == [before]  # threads started later get the caller's setting, not 1


def test_a_failing_batch_fails_the_call_without_hanging(tiny_bert: str) -> None:
    loaded = load_model(tiny_bert, device="cpu", dtype="float32")
    engine = Engine(loaded, max_batch_tokens=32, num_workers=2)
    calls = 0
    lock = threading.Lock()

    def head(hidden: torch.Tensor, _ids: torch.Tensor, _mask: torch.Tensor) -> list:
        nonlocal calls
        with lock:
            calls += 1
            if calls == 3:
                raise RuntimeError("batch 3 failed")
        return list(hidden[:, 0])

    ids = loaded.tokenizer(MIXED[:60])["input_ids"]
    with pytest.raises(RuntimeError, match="batch 3 failed"):
        engine.run(ids, head)
    calls = 10  # no more failures: the same engine still works
    assert len(engine.run(ids, head)) == 60


def test_workers_default_and_validation(tiny_bert: str) -> None:
    loaded = load_model(tiny_bert, device="cpu", dtype="float32")
    assert Engine(loaded).workers() == min(2, torch.get_num_threads())
    assert Engine(loaded, num_workers=3).workers() == 3
    gpu = LoadedModel(name="x", path="x", tokenizer=loaded.tokenizer, model=loaded.model,
                      device=torch.device("cuda"), dtype="float16")
    assert Engine(gpu, num_workers=4).workers() == 1  # GPUs run batches in turn
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="num_workers"):
            BGEEmbedder(tiny_bert, device="cpu", num_workers=bad)


# -- the lean encoder pass (and its last layer for the first token only) ---------------------
def _padded(loaded: LoadedModel, texts: list[str]) -> dict:
    return loaded.tokenizer(texts, padding=True, return_tensors="pt")


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_m3", "minilm_dir"])
def test_lean_encoder_equals_the_model_forward(fixture: str,
                                               request: pytest.FixtureRequest) -> None:
    loaded = load_model(request.getfixturevalue(fixture), device="cpu", dtype="float32")
    lean = lean_encoder(loaded.model)
    assert lean is not None and loaded.lean is not None
    padded = _padded(loaded, MIXED[:40])
    unpadded = _padded(loaded, MIXED[:1] * 3)  # no padding: attention without a mask
    for batch in (padded, unpadded):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        with torch.inference_mode():
            want = loaded.model(input_ids=ids, attention_mask=mask).last_hidden_state
            every = lean(ids, mask)
            first = lean(ids, mask, first_token_only=True)
        # every position, padding rows included, and the first token through the short layer;
        # unnormalised states: the tolerance scales with their size (float32 kernels differ
        # by CPU: AVX2, AVX-512, AMX)
        scale = float(want.abs().max())
        torch.testing.assert_close(every, want, atol=1e-6 * scale, rtol=1e-5)
        assert first.shape == (len(ids), 1, loaded.hidden_size)
        torch.testing.assert_close(first[:, 0], want[:, 0], atol=1e-6 * scale, rtol=1e-5)
    # the lean pass runs the model's own modules: nothing copied, the model left whole
    assert lean.layers[0] is loaded.model.encoder.layer[0]
    assert lean.embeddings is loaded.model.embeddings
    assert loaded.model.config.num_hidden_layers == len(loaded.model.encoder.layer)


def test_lean_encoder_refuses_unknown_layouts(tiny_mistral: str) -> None:
    loaded = load_model(tiny_mistral, device="cpu", dtype="float32")
    assert lean_encoder(loaded.model) is None
    assert loaded.lean is None


def test_m3_dense_alone_equals_dense_with_every_head(tiny_m3: str) -> None:
    m3 = BGEM3Embedder(tiny_m3, device="cpu")
    alone = m3.encode_documents(MIXED, sparse=False).dense
    together = m3.encode_documents(MIXED, sparse=True, colbert=True).dense
    np.testing.assert_allclose(alone, together, atol=1e-5)


def test_int8_lean_first_token_path_stays_close_to_the_full_int8_forward(tiny_bert: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu", dtype="int8", num_workers=1)
    loaded = emb._loaded
    batch = _padded(loaded, MIXED[:20])
    with torch.inference_mode():
        full = loaded.model(**batch).last_hidden_state[:, 0]
    got = torch.from_numpy(emb.encode_documents(MIXED[:20]))
    cos = torch.nn.functional.cosine_similarity(got, full, dim=-1)
    assert cos.min() > 0.99


# -- several devices: one replica and one worker each -----------------------------------------
# "cpu" and "cpu:0" load two replicas (the model cache keys them apart), which exercises the
# multi-device path (replica lookup per batch, per-device heads, OOM per worker) without GPUs.
def test_a_device_list_runs_one_replica_per_device(tiny_m3: str) -> None:
    one = BGEM3Embedder(tiny_m3, device="cpu", max_batch_tokens=96, num_workers=1)
    two = BGEM3Embedder(tiny_m3, device=["cpu", "cpu:0"], max_batch_tokens=96)
    assert two._engine.workers() == 2 and two._engine.replicas[0] is not two._loaded
    a = one.encode_documents(MIXED, colbert=True)
    b = two.encode_documents(MIXED, colbert=True)
    np.testing.assert_allclose(b.dense, a.dense, atol=1e-5)
    for x, y in zip(a.colbert, b.colbert, strict=False):
        np.testing.assert_allclose(y, x, atol=1e-5)
    dense = BGEEmbedder(tiny_m3, pooling="cls", device=["cpu", "cpu:0"], max_batch_tokens=96)
    np.testing.assert_allclose(dense.encode_documents(MIXED), a.dense, atol=1e-5)


def test_device_list_validation(tiny_bert: str) -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        BGEEmbedder(tiny_bert, device=[])
    with pytest.raises(ValueError, match="Invalid device"):
        BGEEmbedder(tiny_bert, device=["cpu", "tpu-please"])


def test_out_of_memory_on_one_device_re_splits_only_its_batch(
        tiny_bert: str, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = BGEEmbedder(tiny_bert, device=["cpu", "cpu:0"], max_batch_tokens=4096)
    want = BGEEmbedder(tiny_bert, device="cpu", num_workers=1).encode_documents(MIXED)
    original = Engine.forward
    sizes: list[int] = []

    def forward(engine: Engine, rows: list, head: object, **options: object) -> object:
        if len(rows) > 7 and options["replica"] is not engine.loaded:
            raise torch.OutOfMemoryError("simulated: the second device holds 7 texts at most")
        sizes.append(len(rows))
        return original(engine, rows, head, **options)

    monkeypatch.setattr(Engine, "forward", forward)
    np.testing.assert_allclose(emb.encode_documents(MIXED), want, atol=1e-5)
    assert sum(sizes) == len(MIXED)
