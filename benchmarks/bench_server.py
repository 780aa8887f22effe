"""Load test of `bge-integrations serve` on loopback, against the in-process throughput.

A server process serves the model; this process runs ``--clients`` concurrent aiohttp clients
(asyncio) that send ``--requests`` requests of ``--texts-per-request`` STS sentences each
(base64 answers, as the openai client asks). Every answer is checked against the in-process
vectors (nothing lost, nothing wrong). Reported: requests/s, texts/s, p50/p99 latency, and the
service overhead at saturation against two in-process baselines:

* ``one call``: one ``encode_documents`` call over all the texts (the engine's best case: the
  whole corpus length-sorted into full batches);
* ``same calls``: the same requests made in this process by ``--clients`` threads on an
  embedder with ``share_batches()`` (the batcher the server uses), i.e. the same work without
  HTTP: the difference is what the service layer itself costs.

overhead = 1 - (server texts/s) / (in-process texts/s). The load generator shares the machine
with the server: on a small machine its own CPU use (HTTP, JSON, base64) counts against the
server's throughput. So CPU time is reported too: the server process's CPU seconds per text
against each baseline's (``cpu_overhead_*``), and the load generator's own CPU seconds, which a
real deployment spends on other machines.

Example:
    python benchmarks/bench_server.py --requests 2000 --clients 200 --texts-per-request 8
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, git_rev, machine_description, sts_sentences  # noqa: E402

from bge_integrations import BGEEmbedder  # noqa: E402

MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # packaged: runs offline


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def in_process(model: str, texts: list[str], rounds: int) -> tuple[float, float, np.ndarray]:
    """Best texts/s and least CPU s/text of ``rounds`` ``encode_documents`` calls over all
    texts, and the vectors."""
    emb = BGEEmbedder(model, device="cpu")
    emb.encode_documents(texts[:256])  # warm-up
    best, cpu, vectors = 0.0, float("inf"), None
    me = psutil.Process()
    for _ in range(rounds):
        start, cpu_start = time.perf_counter(), _cpu_seconds(me)
        vectors = emb.encode_documents(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
        cpu = min(cpu, (_cpu_seconds(me) - cpu_start) / len(texts))
    return best, cpu, vectors


def in_process_same_calls(model: str, batches: list[list[str]], clients: int,
                          rounds: int) -> tuple[float, float]:
    """Best texts/s and least CPU s/text of the requests' calls made by ``clients`` threads
    in this process, through one shared batcher (the server's core path without HTTP)."""
    emb = BGEEmbedder(model, device="cpu")
    batcher = emb.share_batches(max_wait_ms=2.0)
    n = sum(len(b) for b in batches)
    best, cpu = 0.0, float("inf")
    me = psutil.Process()
    try:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(emb.encode_documents, batches[:clients]))  # warm-up
            for _ in range(rounds):
                start, cpu_start = time.perf_counter(), _cpu_seconds(me)
                list(pool.map(emb.encode_documents, batches))
                best = max(best, n / (time.perf_counter() - start))
                cpu = min(cpu, (_cpu_seconds(me) - cpu_start) / n)
    finally:
        batcher.close()
    return best, cpu


def start_server(model: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "bge_integrations.cli", "serve", "--model",
                             model, "--port", str(port), "--device", "cpu"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server failed to start:\n{proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start within 120 s")


async def load(url: str, model: str, batches: list[list[str]], clients: int
               ) -> tuple[float, list[float], list[np.ndarray | None], int]:
    """Send every batch once from ``clients`` workers; (seconds, latencies, answers, errors)."""
    answers: list[np.ndarray | None] = [None] * len(batches)
    latencies: list[float] = []
    errors = 0
    next_index = iter(range(len(batches)))
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as client:

        async def worker() -> None:
            nonlocal errors
            for i in next_index:
                start = time.perf_counter()
                async with client.post("/v1/embeddings", json={
                        "model": model, "input": batches[i],
                        "encoding_format": "base64"}) as resp:
                    body = await resp.read()
                latencies.append(time.perf_counter() - start)
                if resp.status != 200:
                    errors += 1
                    continue
                data = sorted(json.loads(body)["data"], key=lambda d: d["index"])
                answers[i] = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4")
                                       for d in data])

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - start, latencies, answers, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="in-process timing rounds")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    sentences = sts_sentences()
    n = args.requests * args.texts_per_request
    texts = [sentences[i % len(sentences)] for i in range(n)]
    batches = [texts[i:i + args.texts_per_request] for i in range(0, n, args.texts_per_request)]
    local_tps, local_cpu, local_vectors = in_process(args.model, texts, args.rounds)
    same_tps, same_cpu = in_process_same_calls(args.model, batches, args.clients, args.rounds)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_server(args.model, port)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(load(url, args.model, batches[:args.clients], args.clients))  # warm-up
        server_process, me = psutil.Process(server.pid), psutil.Process()
        server_cpu, client_cpu = _cpu_seconds(server_process), _cpu_seconds(me)
        seconds, latencies, answers, errors = asyncio.run(
            load(url, args.model, batches, args.clients))
        server_cpu = (_cpu_seconds(server_process) - server_cpu) / n
        client_cpu = (_cpu_seconds(me) - client_cpu) / n
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)

    lost = sum(a is None for a in answers)
    got = np.concatenate([a for a in answers if a is not None]) if lost < len(answers) else None
    max_diff = float(np.abs(got - local_vectors).max()) if got is not None and not lost \
        else None
    served_tps = n / seconds
    result = {
        "model": args.model, "requests": args.requests, "clients": args.clients,
        "texts_per_request": args.texts_per_request, "errors": errors, "lost": lost,
        "max_abs_diff_vs_in_process": max_diff,
        "requests_per_s": round(args.requests / seconds, 1),
        "texts_per_s": round(served_tps, 1),
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
        "in_process_texts_per_s": round(local_tps, 1),
        "overhead_pct": round(100 * (1 - served_tps / local_tps), 1),
        "same_calls_texts_per_s": round(same_tps, 1),
        "overhead_vs_same_calls_pct": round(100 * (1 - served_tps / same_tps), 1),
        "server_cpu_ms_per_text": round(1000 * server_cpu, 2),
        "in_process_cpu_ms_per_text": round(1000 * local_cpu, 2),
        "same_calls_cpu_ms_per_text": round(1000 * same_cpu, 2),
        "cpu_overhead_pct": round(100 * (server_cpu / local_cpu - 1), 1),
        "cpu_overhead_vs_same_calls_pct": round(100 * (server_cpu / same_cpu - 1), 1),
        "load_generator_cpu_ms_per_text": round(1000 * client_cpu, 2),
        "machine": machine_description(), "git": git_rev(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if errors or lost or max_diff is None or max_diff > 1e-5:
        raise SystemExit("the load test lost or changed answers")


if __name__ == "__main__":
    main()
