"""Stress test: does a runtime backend's first call in a fresh process match the torch backend?

Each trial starts a new Python process that loads the model on ``--backend`` (the graph comes
from the cache, built once before the trials), embeds the same texts in one
``encode_documents`` call and compares every row with the torch backend's vectors (computed
once). A row whose largest difference exceeds 1e-4 counts as wrong. This is how one wrong row
in a few percent of OpenVINO's first calls was found (docs/backends.md, Precision).

    python benchmarks/stress_first_call.py --backend openvino --trials 40
    python benchmarks/stress_first_call.py --backend onnx --trials 40 --texts 5000

Model: the bge-small-shaped random BERT of bench_encode.py (384 hidden, 12 layers, CLS
pooling, 512 tokens), texts as bench_encode.py makes them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from bench_encode import SHAPES, build_random_bert, make_texts, vocab_dir  # noqa: E402
from common import REPO  # noqa: E402

WRONG = 1e-4


def embed(job: dict) -> None:
    """In a fresh process: load, one ``encode_documents`` call, save the vectors."""
    sys.path.insert(0, str(REPO))
    import torch

    from bge_integrations import BGEEmbedder

    torch.set_num_threads(job["threads"])
    model = BGEEmbedder(job["model"], pooling="cls", backend=job["backend"],
                        passage_max_length=512)
    texts = json.loads(Path(job["texts"]).read_text())
    np.save(job["out"], model.encode_documents(texts))


def run_trial(job: dict, work: Path, name: str) -> np.ndarray:
    spec = work / f"{name}.json"
    spec.write_text(json.dumps({**job, "out": str(work / f"{name}.npy")}))
    subprocess.run([sys.executable, __file__, "--job", str(spec)], check=True)
    return np.load(work / f"{name}.npy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="openvino", choices=["onnx", "openvino"])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        embed(json.loads(Path(args.job).read_text()))
        return
    with tempfile.TemporaryDirectory(prefix="bge-stress-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("BGE_INTEGRATIONS_CACHE", str(work / "cache"))
        dirname, hidden, layers, heads, inter = SHAPES["small"]
        vocab = vocab_dir(None)
        model = build_random_bert(work / dirname, hidden, layers, heads, inter, vocab)
        from transformers import AutoTokenizer

        texts = make_texts(args.texts, 0.05, AutoTokenizer.from_pretrained(str(vocab)), seed=5)
        (work / "texts.json").write_text(json.dumps(texts))
        job = {"model": str(model), "texts": str(work / "texts.json"), "threads": args.threads}
        reference = run_trial({**job, "backend": "torch"}, work, "torch")
        run_trial({**job, "backend": args.backend}, work, "build")  # exports the graph
        failed = 0
        for trial in range(1, args.trials + 1):
            got = run_trial({**job, "backend": args.backend}, work, f"trial-{trial}")
            rows = np.abs(got - reference).max(axis=1)
            wrong = int((rows > WRONG).sum())
            failed += wrong > 0
            print(f"trial {trial}: max diff {rows.max():.2e}, wrong rows {wrong}", flush=True)
        print(f"{args.backend}: {failed} of {args.trials} first calls had a wrong row")


if __name__ == "__main__":
    main()
