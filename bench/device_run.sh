#!/usr/bin/env bash
# One call on the lent GPU machine: build kiln there, run the GPU tests, run the restore
# benchmark; logs and results land in $OUT (at most 8 files come back).
#   usage: bash bench/device_run.sh [pytest args...]     (KILN_BENCH=0 skips the benchmark)
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/kiln-out}
mkdir -p "$OUT"
# Result files name the commit: KILN_COMMIT, else the COMMIT file bench/pack_head.sh adds.
if [ -z "${KILN_COMMIT:-}" ] && [ -f COMMIT ]; then export KILN_COMMIT=$(cat COMMIT); fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
# Non-editable: the interposer must sit next to the installed package. The repository root
# holds no `kiln` directory, so tests and benchmarks import the installed copy.
python3 -m pip install -q --no-build-isolation --no-deps . ./workloads > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
python3 -m pytest -m gpu tests/gpu -q -rs -p no:cacheprovider "$@" 2>&1 | tee "$OUT/gpu-tests.log" | tail -40
if [ "${KILN_BENCH:-1}" = 1 ]; then
  python3 bench/restore.py --out-dir "$OUT" 2>&1 | tee "$OUT/bench.log" | tail -20
fi
