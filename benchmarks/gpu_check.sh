#!/usr/bin/env bash
# GPU check (see benchmarks/gpu_check.py): the GPU tests, reference-size stage-2/3 training steps in bf16 with
# random weights, the selective scan and batched view cutting on CUDA; one JSON result. Under 10 minutes on an H100.
#
#   benchmarks/gpu_check.sh                       # writes benchmarks/results/gpu_check.json
#   benchmarks/gpu_check.sh --out /tmp/gc.json    # any gpu_check.py option passes through
#
# Without CUDA it exits 0 and checks nothing (the CPU dry run is `python benchmarks/gpu_check.py --dry-run`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# `make install` leaves .venv/; otherwise whatever python3 has the package's dependencies.
PY=.venv/bin/python
[[ -x "$PY" ]] || PY=python3

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >/dev/null 2>&1; then
    echo "no CUDA: nothing to check (nvidia-smi is missing or fails)"
    exit 0
fi
if ! "$PY" -c "import torch; assert torch.cuda.is_available()" >/dev/null 2>&1; then
    echo "no CUDA: nothing to check ($PY's torch cannot use the GPU: a CPU-only wheel?)"
    exit 0
fi

# No model hub on the GPU machine: every model is built from its architecture, and a download must fail fast.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

out=benchmarks/results/gpu_check.json
args=("$@")
for i in "${!args[@]}"; do
    case "${args[$i]}" in
        --out=*) out="${args[$i]#--out=}" ;;
        --out) out="${args[$((i + 1))]:-$out}" ;;
    esac
done

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
rc=0
timeout 570 "$PY" benchmarks/gpu_check.py "$@" || rc=$?
if [[ $rc -eq 124 ]]; then
    echo "gpu_check.py ran past 570 s and was stopped: the JSON holds the sections finished before"
fi
echo "results: $out"
exit "$rc"
