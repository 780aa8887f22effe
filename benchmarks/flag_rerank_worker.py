"""Runs FlagEmbedding 1.4.2's rerankers inside their own venv, for parity tests and the bench.

Executed by the *FlagEmbedding* venv's interpreter, never imported by ``bge_integrations``.
JSON job in, ``.npy`` scores and JSON timings out (no pickle):

    python flag_rerank_worker.py JOB.json

A job: ``{"tasks": [{"cls": "FlagReranker", "path": ..., "kwargs": {...}, "pairs": [[q, p]],
"call": {...}, "out": "scores.npy", "repeat": 1}]}``. ``repeat`` > 1 times the calls (the bench)
and writes ``out`` with ``.json`` timings beside it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mib  # noqa: E402 - stdlib only, beside this file


def run(job: dict) -> None:
    import FlagEmbedding

    for task in job["tasks"]:
        cls = getattr(FlagEmbedding, task["cls"])
        model = cls(task["path"], devices="cpu", use_fp16=False, **task.get("kwargs", {}))
        pairs = [tuple(p) for p in task["pairs"]]
        call = task.get("call", {})
        times = []
        for _ in range(max(1, task.get("repeat", 1))):
            start = time.perf_counter()
            scores = model.compute_score(pairs, **call)
            times.append(time.perf_counter() - start)
        np.save(task["out"], np.asarray(scores, dtype=np.float64))
        Path(task["out"]).with_suffix(".json").write_text(json.dumps(
            {"seconds": times, "pairs": len(pairs), "peak_rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()))
