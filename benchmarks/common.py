"""Helpers shared by the benchmark scripts: the FlagEmbedding venv, STS texts, machine facts."""

from __future__ import annotations

import csv
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_FLAG_PYTHON = HERE / ".flag-venv" / "bin" / "python"
FLAG_WORKER = HERE / "flag_worker.py"
STS_DEV = REPO / "tests" / "data" / "sts-dev.csv"
FLAG_PYTHON_ENV = "BGE_FLAG_PYTHON"


def flag_python(explicit: str | None) -> Path:
    """The FlagEmbedding venv's interpreter: ``--flag-python``, else $BGE_FLAG_PYTHON, else
    ``benchmarks/.flag-venv/bin/python`` (made by ``benchmarks/setup_flag_venv.sh``)."""
    chosen = Path(explicit or os.environ.get(FLAG_PYTHON_ENV) or DEFAULT_FLAG_PYTHON)
    if not chosen.exists():
        msg = (f"FlagEmbedding interpreter {str(chosen)!r} does not exist. Run "
               "`bash benchmarks/setup_flag_venv.sh` to create benchmarks/.flag-venv, or pass "
               f"--flag-python PATH / set {FLAG_PYTHON_ENV}=PATH to a venv with "
               "FlagEmbedding==1.4.2 and transformers==4.57.6.")
        raise SystemExit(msg)
    return chosen


def run_flag(python: Path, mode: str, job_file: Path, timeout: float | None = None) -> None:
    """Run ``flag_worker.py MODE JOB`` in the FlagEmbedding venv; raise with its stderr."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(python), str(FLAG_WORKER), mode, str(job_file)], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        msg = f"FlagEmbedding worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        raise RuntimeError(msg)


def peak_rss_mib() -> float:
    """This process's peak resident memory, MiB.

    On Linux the high-water mark of its own memory (``VmHWM``). Not ``ru_maxrss``: a process
    started with fork/vfork + exec inherits the parent's peak there, so every worker of a
    benchmark that had built a large model would report at least that model's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def sts_rows(path: Path = STS_DEV) -> list[tuple[float, str, str]]:
    """(score, sentence1, sentence2) rows of the STS-B dev split (fields 5, 6, 7; 1-based)."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for fields in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(fields) >= 7:
                rows.append((float(fields[4]), fields[5], fields[6]))
    return rows


def sts_sentences(path: Path = STS_DEV) -> list[str]:
    """Every distinct STS-B dev sentence, in file order."""
    seen: dict[str, None] = {}
    for _, a, b in sts_rows(path):
        seen.setdefault(a, None)
        seen.setdefault(b, None)
    return list(seen)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(devices: list[str] | None = None) -> dict[str, str]:
    """CPU model, the SIMD flags that matter for inference, cores, library versions; the GPUs
    among ``devices`` (name, memory, CUDA version) when there are any."""
    import torch
    import transformers

    sys.path.insert(0, str(REPO))
    from bge_integrations.core.hardware import cpu_flags

    flags = cpu_flags()
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
              "amx_int8"]
    cuda = [torch.device(d) for d in devices or () if d.startswith("cuda")]
    gpus = {}
    if cuda:
        props = [torch.cuda.get_device_properties(d) for d in cuda]
        gpus = {"gpu": ", ".join(f"{p.name} ({p.total_memory / 2**30:.0f} GiB)" for p in props),
                "cuda": str(torch.version.cuda)}
    return {
        **gpus,
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "flags": " ".join(f for f in wanted if f in flags) or "(none of the listed)",
        "missing flags": " ".join(f for f in wanted if f not in flags) or "-",
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "torch cpu capability": torch.backends.cpu.get_cpu_capability(),
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def mib(kib: float) -> float:
    return kib / 1024


def git_rev() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


__all__ = ["flag_python", "run_flag", "sts_rows", "sts_sentences", "machine_description",
           "DEFAULT_FLAG_PYTHON", "REPO", "HERE", "git_rev", "mib", "cpu_model"]

if __name__ == "__main__":  # pragma: no cover - manual check
    print(machine_description(), file=sys.stderr)
