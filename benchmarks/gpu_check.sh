#!/usr/bin/env bash
# The GPU measurements in one run, on a machine without internet access (pack .gpu-kit/ first
# with benchmarks/gpu_kit.sh): the GPU tests, bench_encode in float16 (every contender, both
# BERT shapes) and float32 (parity with FlagEmbedding on the GPU), and the engine sweep of
# token budget x texts per batch. Each step has its own time limit, so one that hangs cannot
# eat the others' (about 9 minutes at most, 4-6 expected on one H100); every log and results
# table lands in $OUT (flat, at most 8 files).
#
#   bash benchmarks/gpu_check.sh                  # from anywhere; uses python3 and cuda
#   OUT=/tmp/gpu DEVICE=cuda:1 bash benchmarks/gpu_check.sh
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh   # dry run of the script itself on a CPU
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
kit="${KIT:-$repo/.gpu-kit}"
out="${OUT:-$repo/benchmarks/results/gpu-check}"
python="$(command -v "${PYTHON:-python3}")"
device="${DEVICE:-cuda}"
mkdir -p "$out"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export BGE_TEST_ACCELERATOR="$device"

# FlagEmbedding's transformers 4.57.6 stack in a folder of its own, in front of the
# machine's packages for the FlagEmbedding worker only (bench_encode drops PYTHONPATH for it)
flag_site="$(mktemp -d)"
"$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
  --target "$flag_site/site" "$kit"/wheels/*.whl || exit 1
printf '#!/bin/sh\nPYTHONPATH=%s exec %s "$@"\n' "$flag_site/site" "$python" \
  > "$flag_site/python"
chmod +x "$flag_site/python"

step() {  # step NAME SECONDS COMMAND...: run, log to $out/NAME.log, report the exit status
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date -u +%H:%M:%S))"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  echo "== $name exit ${PIPESTATUS[0]}"
}

quick=()
[ -n "${QUICK:-}" ] && quick=(--quick)
bench=("$python" benchmarks/bench_encode.py --device "$device" --tokenizer "$kit/tokenizer"
       --flag-python "$flag_site/python" --no-docs --rounds 1 "${quick[@]}")
step machine 30 sh -c "nvidia-smi 2>/dev/null; \"$python\" -c 'import torch, transformers; \
print(torch.__version__, transformers.__version__, torch.cuda.is_available())'"
step tests 100 "$python" -m pytest tests/test_gpu.py tests/test_perf_paths.py -q \
  -p no:cacheprovider
if [ "$device" = cpu ]; then
  step bench-float32 900 "${bench[@]}"
else
  step bench-float16 200 "${bench[@]}" --models small,base
  step bench-float32 90 "${bench[@]}" --models small --dtype float32 \
    --contenders "bge_integrations,FlagEmbedding 1.4.2,plain loop"
fi
sweep=("$python" benchmarks/sweep_engine.py --device "$device" --tokenizer "$kit/tokenizer"
       --rounds 2)
if [ "$device" = cpu ]; then
  step sweep 600 "${sweep[@]}" --n-texts 300 --budgets 512 --workers 2
else
  step sweep 110 "${sweep[@]}" --dtype float16 --n-texts 20000 \
    --budgets 8192,32768,65536 --workers 1 --batch-sizes 256,4096
fi
find benchmarks/results -name 'encode-*gpu*.md' -newer "$flag_site/python" \
  -exec cp {} "$out/" \;
rm -rf "$flag_site"
ls "$out"
