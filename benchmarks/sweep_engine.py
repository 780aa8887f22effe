"""Engine settings swept back to back in one process: token budget x workers x texts per batch.

Every setting encodes the same texts with the same model, round after round in a fixed
rotation, next to the plain length-sorted loop of bench_encode.py, so slow minutes of a shared
machine hit every setting alike. Prints tokens/s per round and the median per setting, as a
Markdown table (docs/performance.md keeps the latest one).

    python benchmarks/sweep_engine.py                       # bge-small-shaped BERT, 1,500 texts
    python benchmarks/sweep_engine.py --budgets 512,1024,2048 --workers 1,2 --rounds 3
    python benchmarks/sweep_engine.py --dtype int8 --budgets 1024,2048,4096 --workers 2
    python benchmarks/sweep_engine.py --budgets 512 --workers 2 --bound   # + matmul-only bound
    python benchmarks/sweep_engine.py --device cuda --dtype float16 --n-texts 20000 \
        --budgets 8192,16384,32768,65536 --workers 1 --batch-sizes 256,4096  # GPU, loop too
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench_encode sets HF_HUB_OFFLINE and TOKENIZERS_PARALLELISM on import
from bench_encode import (
    LOOP_BUDGET,
    SHAPES,
    build_random_bert,
    make_texts,
    plain_loop,
    vocab_dir,
)
from common import REPO, git_rev, machine_description


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="small", choices=sorted(SHAPES))
    parser.add_argument("--n-texts", type=int, default=1500)
    parser.add_argument("--budgets", default="512,1024,2048")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch-sizes", default="256",
                        help="most texts per batch (the engine's batch_size), comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="float32",
                        choices=("float32", "int8", "float16", "bfloat16"),
                        help="bge_integrations' dtype (the plain loop runs float32, or the same "
                        "half precision on a GPU)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--model-dir", help="reuse a model directory built by bench_encode")
    parser.add_argument("--tokenizer", help="tokenizer files folder, as in bench_encode.py")
    parser.add_argument("--bound", action="store_true",
                        help="add a CPU upper bound: only the model's matrix products for the "
                        "same batches (first budget, first workers count), nothing else")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    sys.path.insert(0, str(REPO))
    from bge_integrations import BGEEmbedder

    dirname, hidden, layers, heads, inter = SHAPES[args.shape]
    vocab = vocab_dir(args.tokenizer)
    path = Path(args.model_dir) if args.model_dir else build_random_bert(
        Path(tempfile.mkdtemp(prefix="bge-sweep-")) / dirname, hidden, layers, heads, inter,
        vocab)
    tokenizer = AutoTokenizer.from_pretrained(vocab)
    texts = make_texts(args.n_texts, 0.05, tokenizer)
    n_tokens = sum(len(x) for x in tokenizer(texts, truncation=True, max_length=512)["input_ids"])

    gpu = args.device.startswith("cuda")
    loop_dtype = args.dtype if gpu and args.dtype in ("float16", "bfloat16") else "float32"
    loop_budget = LOOP_BUDGET["cuda" if gpu else "cpu"]
    loop_name = f"plain loop ({loop_budget:,}, {loop_dtype})"
    settings: dict[str, object] = {
        loop_name: plain_loop(str(path), "cls", 512, loop_budget, device=args.device,
                              dtype=loop_dtype)}
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    for workers in (int(w) for w in args.workers.split(",")):
        for budget in (int(b) for b in args.budgets.split(",")):
            for size in sizes:
                emb = BGEEmbedder(str(path), pooling="cls", device=args.device, dtype=args.dtype,
                                  passage_max_length=512, max_batch_tokens=budget,
                                  num_workers=workers, batch_size=size)
                name = f"{args.dtype}, workers {workers}, budget {budget:,}"
                settings[name + (f", {size:,} texts" if len(sizes) > 1 else "")] = (
                    emb.encode_documents)
    if args.bound:
        budget, workers = int(args.budgets.split(",")[0]), int(args.workers.split(",")[0])
        settings[f"bound: matrix products only, workers {workers}, budget {budget:,}"] = (
            matmul_bound(str(path), tokenizer, budget, workers))
    rounds: dict[str, list[float]] = {name: [] for name in settings}
    for r in range(args.rounds):
        for name, encode in settings.items():
            t0 = time.perf_counter()
            encode(texts)
            rounds[name].append(n_tokens / (time.perf_counter() - t0))
            print(f"round {r + 1} {name}: {rounds[name][-1]:,.0f} tok/s", file=sys.stderr,
                  flush=True)

    loop = statistics.median(rounds[loop_name])
    machine = machine_description([args.device])
    print(f"{args.n_texts:,} texts ({n_tokens:,} tokens), bge-{args.shape}-shaped BERT, "
          f"{torch.get_num_threads()} torch threads, {machine.get('gpu', machine['cpu'])}, "
          f"commit {git_rev()}, "
          f"`python benchmarks/sweep_engine.py`\n")
    print("| setting | tokens/s per round | median | vs plain loop |")
    print("|---|---|---:|---:|")
    for name, values in rounds.items():
        median = statistics.median(values)
        print(f"| {name} | {' / '.join(f'{v:,.0f}' for v in values)} | **{median:,.0f}** | "
              f"{median / loop:.2f}x |")
    return 0


def matmul_bound(path: str, tokenizer, budget: int, workers: int):  # noqa: ANN001, ANN201
    """An upper bound for a float32 CPU engine: the Linear layers' matrix products alone.

    Same length-sorted batches and workers as the engine (its own queue and ``drain``), same
    weights, CLS pooling (the last layer's query/output/FFN products for the first token only),
    but no embeddings, attention, GELU, LayerNorm, padding or pooling: no engine doing the
    same arithmetic with these BLAS kernels can be faster.
    """
    import numpy as np
    import torch
    from transformers import AutoModel

    from bge_integrations.core.scheduler import BatchQueue, drain

    model = AutoModel.from_pretrained(path).eval()
    layers = [(layer.attention.self.query, layer.attention.self.key, layer.attention.self.value,
               layer.attention.output.dense, layer.intermediate.dense, layer.output.dense)
              for layer in model.encoder.layer]
    hidden, inter = model.config.hidden_size, model.config.intermediate_size
    rows = max(budget, 512)  # one text of up to 512 tokens exceeds a smaller budget
    x, y = torch.randn(rows, hidden), torch.randn(rows, inter)
    cpu = type("Replica", (), {"device": torch.device("cpu")})()

    def encode(texts: list[str]) -> None:
        ids = tokenizer(texts, truncation=True, max_length=512)["input_ids"]
        queue = BatchQueue(np.array([len(r) for r in ids]), 256)

        def products(_replica: object, positions: np.ndarray) -> list[None]:
            rows = len(positions) * int(queue.lengths[positions[0]])
            for i, (q, k, v, o, up, down) in enumerate(layers):
                m = len(positions) if i == len(layers) - 1 else rows
                for lin, inputs in ((k, x[:rows]), (v, x[:rows]), (q, x[:m]), (o, x[:m]),
                                    (up, x[:m]), (down, y[:m])):
                    lin(inputs)
            return [None] * len(positions)

        threads = max(1, torch.get_num_threads() // workers) if workers > 1 else None
        with torch.inference_mode():
            drain(queue, [cpu] * workers, products, lambda *_: None, budget, threads)

    return encode


if __name__ == "__main__":
    sys.exit(main())
