"""Performance code paths: int8 dynamic quantization (per-channel weights) and its quality."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from bge_integrations import BGEEmbedder
from bge_integrations.core.engine import load_model, quantize_int8

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
