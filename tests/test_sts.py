"""The real all-MiniLM-L6-v2 reproduces its STS-B dev score (86.72 with sentence-transformers)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from bge_integrations import BGEEmbedder

STS_DEV = Path(__file__).parent / "data" / "sts-dev.csv"
REFERENCE_SPEARMAN = 86.72


def load_sts() -> tuple[list[str], list[str], np.ndarray]:
    s1, s2, gold = [], [], []
    with STS_DEV.open(encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            gold.append(float(row[4]))
            s1.append(row[5])
            s2.append(row[6])
    return s1, s2, np.array(gold)


def sts_spearman(embedder: BGEEmbedder) -> float:
    s1, s2, gold = load_sts()
    a, b = embedder.encode(s1), embedder.encode(s2)
    cosine = np.sum(a * b, axis=1)
    return 100 * spearmanr(cosine, gold).statistic


@pytest.mark.slow
def test_minilm_sts_dev_spearman(minilm_dir: str) -> None:
    s1, _, _ = load_sts()
    assert len(s1) == 1500
    score = sts_spearman(BGEEmbedder(minilm_dir, pooling="mean", device="cpu"))
    assert score == pytest.approx(REFERENCE_SPEARMAN, abs=0.05)
