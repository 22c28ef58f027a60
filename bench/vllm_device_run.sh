#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and vLLM 0.24: build kiln and kiln-vllm, run
# bench/vllm_cold_start.py for each model given. Result files and one log archive per model
# are written to the output directory.
#   usage: bash bench/vllm_device_run.sh [--out-dir DIR] MODES MODEL_DIR...
#          (DIR defaults to /tmp/kiln-out; MODES: e.g. native-cold,native,save,load)
# vLLM must be importable, or KILN_VLLM_INSTALL names a script that installs it. Where vLLM
# lives outside the interpreter's own site-packages, KILN_VLLM_SITE names that directory: it
# is put on PYTHONPATH and its bytecode compiled once.
set -uo pipefail
export PYTHONUNBUFFERED=1
usage="usage: bash bench/vllm_device_run.sh [--out-dir DIR] MODES MODEL_DIR..."
results_dir=/tmp/kiln-out
if [ "${1:-}" = --out-dir ]; then
  [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
  results_dir=$2; shift 2
fi
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
mkdir -p "$results_dir"
# Result files name the commit: KILN_COMMIT, else the COMMIT file bench/pack_head.sh adds.
if [ -z "${KILN_COMMIT:-}" ] && [ -f COMMIT ]; then export KILN_COMMIT=$(cat COMMIT); fi
modes=$1; shift
site=${KILN_VLLM_SITE:-}
if [ -n "$site" ]; then export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}; fi
if ! python3 -c "import vllm" 2>/dev/null; then
  if [ -z "${KILN_VLLM_INSTALL:-}" ]; then
    echo "vLLM is not importable: install vLLM 0.24 or set KILN_VLLM_INSTALL" >&2; exit 1
  fi
  bash "$KILN_VLLM_INSTALL" > "$results_dir/install.log" 2>&1 \
    || { tail -30 "$results_dir/install.log"; exit 1; }
fi
# An installation unpacked without bytecode makes every process compile each module it
# imports from source (1.5 s of an 8B LOAD's `LLM()` in a cProfile, 598 modules). pip
# writes bytecode when it installs, so every mode runs with it: compile it once.
if [ -n "$site" ]; then
  {
    python3 -c 'import sys; print("dont_write_bytecode", sys.dont_write_bytecode)'
    echo "$site: $(find "$site" -name '*.py' | wc -l) .py, $(find "$site" -name '*.pyc' | wc -l) .pyc before"
    python3 -m compileall -q -j 0 "$site" >/dev/null 2>&1
    echo "$site: $(find "$site" -name '*.pyc' | wc -l) .pyc after"
  } > "$results_dir/bytecode.log" 2>&1
fi
python3 -m pip install -q --no-build-isolation --no-deps . ./adapters/vllm > "$results_dir/build.log" 2>&1 \
  || { tail -50 "$results_dir/build.log"; exit 1; }
rc=0
for model in "$@"; do
  name=$(basename "$model")
  python3 bench/vllm_cold_start.py --model "$model" --modes "$modes" --out-dir "$results_dir" \
    --work-dir "/tmp/kiln-vllm-$name" 2>&1 | tail -60 || rc=1
  tar czf "$results_dir/logs-$name.tgz" -C "/tmp/kiln-vllm-$name" --exclude=archive . 2>/dev/null
done
exit $rc
