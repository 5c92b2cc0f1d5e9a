#!/usr/bin/env bash
# The P8 GPU figures in one go (prepare, then start it once: GPU time is short). About 10 minutes
# on one H100/H200; every table is also written to OUT (default benchmarks/gpu_results/).
#   PYTHON=.venv/bin/python bash benchmarks/gpu.sh [OUT]
# 1. one epoch at depth 50, three ways (bench_epoch.py);
# 2. 1, 8 and 32 members of depth 50 against one job at a time (target: 32 members >= 10x);
# 3. the full +experiment=grid projected from its 24 measured groups (target: < 10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${1:-benchmarks/gpu_results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
"$PY" benchmarks/bench_epoch.py --device cuda --repeats 3 | tee "$OUT/bench_epoch.txt"
"$PY" benchmarks/bench_ensemble.py --device cuda --depths 50 --groups 1 8 32 --epochs 2 | tee "$OUT/bench_ensemble.txt"
"$PY" benchmarks/bench_grid.py project --device cuda --epochs 1 | tee "$OUT/grid_projection.txt"
