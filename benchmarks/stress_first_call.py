"""Stress test: does a runtime backend's first call in a fresh process match the torch backend?

Each trial starts a new Python process that loads the model on ``--backend`` (the graph comes
from the cache, built once before the trials), embeds the same texts in one
``encode_documents`` call and compares every row with the torch backend's vectors (computed
once). A row whose largest difference exceeds 1e-4 counts as wrong. This is how one wrong row
in about 1 of 11 first calls was found when OpenVINO ran two streams side by side; it runs one
since (docs/backends.md, Precision).

    python benchmarks/stress_first_call.py --backend openvino --trials 40
    python benchmarks/stress_first_call.py --backend onnx --trials 40 --texts 5000
    python benchmarks/stress_first_call.py --trials 70 --longest 400   # ~10 s a trial

Model: the bge-small-shaped random BERT of bench_encode.py (384 hidden, 12 layers, CLS
pooling, 512 tokens), texts as bench_encode.py makes them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from bench_encode import (  # noqa: E402
    OURS,
    SHAPES,
    build_random_bert,
    make_texts,
    run_contender,
    vocab_dir,
)

WRONG = 1e-4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="openvino", choices=["onnx", "openvino"])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--longest", type=int, default=None,
                        help="embed only this many of the longest texts (400: ~10 s a trial; "
                        "the wrong rows came from long texts, each a batch of a new shape)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bge-stress-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("BGE_INTEGRATIONS_CACHE", str(work / "cache"))
        dirname, hidden, layers, heads, inter = SHAPES["small"]
        vocab = vocab_dir(None)
        model = build_random_bert(work / dirname, hidden, layers, heads, inter, vocab)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(vocab))
        texts = make_texts(args.texts, 0.05, tokenizer, seed=5)
        lengths = [min(len(ids), 512) for ids in tokenizer(texts)["input_ids"]]
        if args.longest:
            keep = sorted(range(len(texts)), key=lambda i: -lengths[i])[:args.longest]
            texts, lengths = [texts[i] for i in keep], [lengths[i] for i in keep]
        (work / "texts.json").write_text(json.dumps(texts))
        # bench_encode's worker: a fresh process, one encode_documents call, vectors saved
        job = {"path": str(model), "pooling": "cls", "max_length": 512,
               "texts": str(work / "texts.json"), "threads": args.threads}
        contender = f"{OURS} {args.backend}"

        def first_call(name: str) -> np.ndarray:
            return np.load(run_contender(name, job, work, None)["embeddings"])

        reference = first_call(OURS)  # the torch backend
        first_call(contender)  # exports the graph into the cache
        failed = 0
        for trial in range(1, args.trials + 1):
            rows = np.abs(first_call(contender) - reference).max(axis=1)
            wrong = int((rows > WRONG).sum())
            failed += wrong > 0
            where = ", ".join(f"row {i} ({lengths[i]} tokens): {rows[i]:.2e}"
                              for i in np.flatnonzero(rows > WRONG))
            print(f"trial {trial}: max diff {rows.max():.2e}, wrong rows {wrong}"
                  f"{' - ' + where if where else ''}", flush=True)
        print(f"{args.backend}: {failed} of {args.trials} first calls had a wrong row")


if __name__ == "__main__":
    main()
