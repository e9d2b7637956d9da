#!/usr/bin/env bash
# The GPU check (issue 21): the tiny twin end to end on the GPU, members against the CPU,
# training and inference throughput. Run from the repository root in an environment with
# fluxscale installed (`pip install -e .`) and a CUDA build of torch:
#   bash benchmarks/gpu_check.sh            # exit 0 pass, 1 members differ, 2 no CUDA device
#   bash benchmarks/gpu_check.sh --device cpu   # the same script CPU against CPU (a dry run)
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "gpu_check: no nvidia-smi"
exec python -m benchmarks.gpu_check "$@"
