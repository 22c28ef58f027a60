#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build kiln, run the GPU tests, run the restore benchmark.
# Logs and result files are written to the output directory.
#   usage: bash bench/device_run.sh [--out-dir DIR] [pytest args...]
#          (DIR defaults to /tmp/kiln-out; KILN_BENCH=0 skips the benchmark)
set -uo pipefail
export PYTHONUNBUFFERED=1
results_dir=/tmp/kiln-out
if [ "${1:-}" = --out-dir ]; then
  [ $# -ge 2 ] || { echo "usage: bash bench/device_run.sh [--out-dir DIR] [pytest args...]" >&2; exit 2; }
  results_dir=$2; shift 2
fi
mkdir -p "$results_dir"
# Result files name the commit: KILN_COMMIT, else the COMMIT file bench/pack_head.sh adds.
if [ -z "${KILN_COMMIT:-}" ] && [ -f COMMIT ]; then export KILN_COMMIT=$(cat COMMIT); fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$results_dir/device.txt"
# Non-editable: the interposer must sit next to the installed package. The repository root
# holds no `kiln` directory, so tests and benchmarks import the installed copy.
python3 -m pip install -q --no-build-isolation --no-deps . ./workloads > "$results_dir/build.log" 2>&1 || { tail -50 "$results_dir/build.log"; exit 1; }
python3 -m pytest -m gpu tests/gpu -q -rs -p no:cacheprovider "$@" 2>&1 | tee "$results_dir/gpu-tests.log" | tail -40
if [ "${KILN_BENCH:-1}" = 1 ]; then
  python3 bench/restore.py --out-dir "$results_dir" 2>&1 | tee "$results_dir/bench.log" | tail -20
fi
