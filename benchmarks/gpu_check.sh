#!/usr/bin/env bash
# GPU check (≤ 5 min on one GPU): a few steps of every stage on CUDA with AMP, printing throughput,
# then the torch.distributed path under torchrun (NCCL, one process per GPU, at most 2).
#
#   benchmarks/gpu_check.sh                           # CUDA, the paper's CIFAR-10 architectures
#   benchmarks/gpu_check.sh --size tiny --device cpu  # the same stages, tiny, on a CPU (2 gloo processes)
#
# PYTHON selects the interpreter (default: .venv/bin/python if present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
"$PY" benchmarks/gpu_check.py --stage all "$@"
NPROC=$("$PY" benchmarks/gpu_check.py --stage nproc "$@")
"$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" \
    benchmarks/gpu_check.py --stage distributed "$@"
echo "gpu_check: done in $(( $(date +%s) - start )) s"
