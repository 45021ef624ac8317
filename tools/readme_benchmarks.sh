#!/usr/bin/env bash
# Reproduce the README's benchmark tables on this machine: each script prints its table (ratios
# against a peer run in the same process). Run from the repository root, on an idle machine:
#   bash tools/readme_benchmarks.sh [--quick]
# The README says which CPU gave its figures; this prints the CPU first so the tables can be
# compared with them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
quick=()
if [[ "${1:-}" == "--quick" ]]; then quick=(--quick); fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512_bf16|amx_tile)$' | tr '\n' ' ')"
echo "threads: $(nproc)"
echo
echo "## Detection speed against OpenCV DNN (README: Detection)"
"$PY" benchmarks/detect_speed.py "${quick[@]}"
echo
echo "## Winograd against oneDNN per layer shape (README: Detection)"
"$PY" benchmarks/winograd_layers.py
echo
echo "## Training speed against a plain PyTorch port (README: Training)"
"$PY" benchmarks/train_speed.py "${quick[@]}"
