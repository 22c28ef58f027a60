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
python3 -m pip install -q --no-build-isolation --no-deps . ./workloads ./adapters/trtllm \
  > "$results_dir/build.log" 2>&1 || { tail -50 "$results_dir/build.log"; exit 1; }
# Every test file that holds GPU tests, or the files given. KILN_GPU_JOBS > 1 runs that many
# files at once (each test starts its own fresh processes; one GPU holds them all), each
# file's log and JUnit report apart; the benchmark always runs alone, afterwards.
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(grep -rlE "pytest\.mark\.gpu" tests --include='test_*.py' | sort)
fi
jobs=${KILN_GPU_JOBS:-1}
printf '%s\n' "${files[@]}" | xargs -P "$jobs" -I{} bash -c '
  name=$(echo "{}" | tr / _ | sed "s/\.py$//")
  python3 -m pytest -m gpu "{}" -q -rs -p no:cacheprovider --junitxml="$0/junit-$name.xml" \
    --basetemp="${TMPDIR:-/tmp}/kiln-gpu-tests/$name" \
    > "$0/gpu-$name.log" 2>&1
  echo "{}: rc $? $(tail -1 "$0/gpu-$name.log")"' "$results_dir" | tee "$results_dir/gpu-tests.log"
if [ "${KILN_BENCH:-1}" = 1 ]; then
  python3 bench/restore.py --out-dir "$results_dir" 2>&1 | tee "$results_dir/bench.log" | tail -20
fi
