#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and SGLang 0.5.16: build kiln and kiln-sglang, run
# bench/sglang_cold_start.py for each model given. Result files and logs are written to the
# output directory.
#   usage: bash bench/sglang_device_run.sh [--out-dir DIR] MODES ENTRIES MODEL_DIR...
#          (DIR defaults to /tmp/kiln-out; MODES: e.g. native,save,load; ENTRIES: engine,server)
# SGLang must be importable, or KILN_SGLANG_INSTALL names a script that installs it. Where it
# lives outside the interpreter's own site-packages, KILN_SGLANG_SITE names that directory: it
# is put on PYTHONPATH and its bytecode compiled once.
set -uo pipefail
export PYTHONUNBUFFERED=1
usage="usage: bash bench/sglang_device_run.sh [--out-dir DIR] MODES ENTRIES MODEL_DIR..."
results_dir=/tmp/kiln-out
if [ "${1:-}" = --out-dir ]; then
  [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
  results_dir=$2; shift 2
fi
[ $# -ge 3 ] || { echo "$usage" >&2; exit 2; }
mkdir -p "$results_dir"
if [ -z "${KILN_COMMIT:-}" ] && [ -f COMMIT ]; then export KILN_COMMIT=$(cat COMMIT); fi
modes=$1; entries=$2; shift 2
site=${KILN_SGLANG_SITE:-}
if [ -n "$site" ]; then export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}; fi
if ! python3 -c "import sglang" 2>/dev/null; then
  if [ -z "${KILN_SGLANG_INSTALL:-}" ]; then
    echo "SGLang is not importable: install SGLang 0.5.16 or set KILN_SGLANG_INSTALL" >&2; exit 1
  fi
  bash "$KILN_SGLANG_INSTALL" > "$results_dir/install.log" 2>&1 \
    || { tail -30 "$results_dir/install.log"; exit 1; }
fi
if [ -n "$site" ]; then python3 -m compileall -q -j 0 "$site" >/dev/null 2>&1; fi
python3 -m pip install -q --no-build-isolation --no-deps . ./adapters/sglang > "$results_dir/build.log" 2>&1 \
  || { tail -50 "$results_dir/build.log"; exit 1; }
python3 -c "import sglang, torch; print('sglang', sglang.__version__, 'torch', torch.__version__)" 2>&1 | tail -5
rc=0
for model in "$@"; do
  python3 bench/sglang_cold_start.py --model "$model" --modes "$modes" --entry "$entries" \
    --out-dir "$results_dir" 2>&1 | tail -40 || rc=1
done
# Keep each archive's startup report, not the archive.
for archive in "$results_dir"/sglang-*/archive-*; do
  [ -d "$archive" ] || continue
  for f in "$archive"/startup-report*.json; do [ -f "$f" ] && cp "$f" "$archive-$(basename "$f")"; done
  du -sb "$archive" > "$archive.size"; rm -rf "$archive"
done
for log in "$results_dir"/sglang-*/*.log; do
  [ -f "$log" ] || continue
  echo "== $log"; grep -E "Error|error|Traceback|kiln" "$log" | tail -15
done
exit $rc
