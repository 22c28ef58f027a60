#!/usr/bin/env bash
# One call on the lent GPU machine, after the vLLM bundle was staged (see
# ../shared/device/README.md): install it, build kiln and kiln-vllm there, run
# bench/vllm_cold_start.py for each model given; results and a log archive land in $OUT.
#   usage: bash bench/vllm_device_run.sh MODES MODEL_DIR...   (MODES: e.g. native-cold,native,save,load)
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/kiln-out}
mkdir -p "$OUT"
# Result files name the commit: KILN_COMMIT, else the COMMIT file bench/pack_head.sh adds.
if [ -z "${KILN_COMMIT:-}" ] && [ -f COMMIT ]; then export KILN_COMMIT=$(cat COMMIT); fi
modes=$1; shift
if ! python3 -c "import vllm" 2>/dev/null; then
  bash /root/kiln-stage/install.sh > "$OUT/install.log" 2>&1 || { tail -30 "$OUT/install.log"; exit 1; }
fi
export PYTHONPATH=/opt/kiln-site
# The staged bundle is unpacked without bytecode; a process that finds none compiles every
# module it imports from source (1.5 s of an 8B LOAD's `LLM()` in a cProfile, 598 modules).
# pip writes bytecode when it installs, so every mode runs with it: compile it once.
{
  python3 -c 'import sys; print("dont_write_bytecode", sys.dont_write_bytecode)'
  for d in /opt/kiln-site /opt/torch/.venv/lib/python3.12/site-packages; do
    echo "$d: $(find "$d" -name '*.py' | wc -l) .py, $(find "$d" -name '*.pyc' | wc -l) .pyc before"
  done
  python3 -m compileall -q -j 0 /opt/kiln-site >/dev/null 2>&1
  echo "/opt/kiln-site: $(find /opt/kiln-site -name '*.pyc' | wc -l) .pyc after"
} > "$OUT/bytecode.log" 2>&1
python3 -m pip install -q --no-build-isolation --no-deps . ./adapters/vllm > "$OUT/build.log" 2>&1 \
  || { tail -50 "$OUT/build.log"; exit 1; }
rc=0
for model in "$@"; do
  name=$(basename "$model")
  python3 bench/vllm_cold_start.py --model "$model" --modes "$modes" --out-dir "$OUT" \
    --work-dir "/tmp/kiln-vllm-$name" 2>&1 | tail -60 || rc=1
  tar czf "$OUT/logs-$name.tgz" -C "/tmp/kiln-vllm-$name" --exclude=archive . 2>/dev/null
done
exit $rc
