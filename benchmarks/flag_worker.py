"""Runs FlagEmbedding 1.4.2 inside its own venv for ``verify_parity.py`` and ``bench_encode.py``.

This file is executed by the *FlagEmbedding* venv's interpreter (see ``setup_flag_venv.sh``), never
imported by ``bge_integrations``. It talks to its caller only through files: a JSON job description
in, ``.npy`` arrays and JSON out (no pickle).

    python flag_worker.py parity JOB.json
    python flag_worker.py bench JOB.json
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
from common import peak_rss_mib  # noqa: E402 - stdlib only, beside this file


def _flag_class(name: str):  # noqa: ANN202
    import FlagEmbedding

    return getattr(FlagEmbedding, name)


def _save_colbert(out_dir: Path, stem: str, vecs: list) -> None:
    lengths = np.array([len(v) for v in vecs], dtype=np.int64)
    flat = np.concatenate([np.asarray(v, np.float32) for v in vecs]) if vecs else np.zeros((0, 0))
    np.save(out_dir / f"{stem}_colbert.npy", flat.astype(np.float32))
    np.save(out_dir / f"{stem}_colbert_lengths.npy", lengths)


def _save_sparse(out_dir: Path, stem: str, weights: list) -> None:
    rows = [{str(k): float(v) for k, v in w.items()} for w in weights]
    (out_dir / f"{stem}_sparse.json").write_text(json.dumps(rows))


def run_parity(job: dict) -> None:
    """Each task: build the Flag model, encode queries and passages, save the outputs."""
    for task in job["tasks"]:
        out_dir = Path(task["out_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
        model = _flag_class(task["cls"])(task["path"], devices="cpu", use_fp16=False,
                                         **task.get("kwargs", {}))
        queries = task["queries"]
        passages = task["passages"]
        if task["cls"] == "BGEM3FlagModel":
            for stem, texts, fn in (("q", queries, model.encode_queries),
                                    ("p", passages, model.encode_corpus)):
                out = fn(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True)
                np.save(out_dir / f"{stem}_dense.npy", np.asarray(out["dense_vecs"], np.float32))
                _save_sparse(out_dir, stem, out["lexical_weights"])
                _save_colbert(out_dir, stem, out["colbert_vecs"])
            pairs = [tuple(p) for p in task["pairs"]]
            scores = model.compute_score(pairs, weights_for_different_modes=task["weights"])
            (out_dir / "scores.json").write_text(json.dumps(scores))
        else:
            np.save(out_dir / "q_dense.npy",
                    np.asarray(model.encode_queries(queries), np.float32))
            np.save(out_dir / "p_dense.npy",
                    np.asarray(model.encode_corpus(passages), np.float32))
        del model


def run_bench(job: dict) -> None:
    """Load once, encode once (what a user pays), report timings and peak RSS."""
    import torch

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    texts = json.loads(Path(job["texts"]).read_text())
    t0 = time.perf_counter()
    devices = job.get("devices", ["cpu"])
    model = _flag_class("FlagModel")(job["path"], devices=devices[0] if len(devices) == 1
                                     else devices,
                                     use_fp16=job.get("dtype") == "float16",
                                     pooling_method=job["pooling"],
                                     query_instruction_for_retrieval=None,
                                     passage_max_length=job["max_length"],
                                     query_max_length=job["max_length"])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = model.encode_corpus(texts)
    encode_s = time.perf_counter() - t0
    np.save(job["out"], np.asarray(emb, np.float32))
    result = {"load_s": load_s, "encode_s": encode_s,
              "peak_rss_mb": peak_rss_mib(),
              "threads": torch.get_num_threads()}
    if len(devices) == 1 and devices[0].startswith("cuda"):  # a pool's GPUs are in its workers
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated(devices[0]) / 2**20
    Path(job["result"]).write_text(json.dumps(result))


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in {"parity", "bench"}:
        print(__doc__, file=sys.stderr)
        return 2
    job = json.loads(Path(argv[2]).read_text())
    (run_parity if argv[1] == "parity" else run_bench)(job)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
