#!/usr/bin/env bash
# SGLang's server through kiln with a dummy-weight model config (no download, no tokenizer).
#   usage: recipes/sglang/serve.sh save|load|auto [MODEL_DIR] [ARCHIVE_DIR] [extra launch_server args...]
# SAVE and LOAD must get the same arguments: the settings are part of the archive fingerprint.
set -euo pipefail
mode=${1:?usage: serve.sh save|load|auto [MODEL_DIR] [ARCHIVE_DIR] [launch_server args...]}
model=${2:-bench/models/qwen3-0.6b}
archive=${3:-/tmp/kiln-archives/sglang-$(basename "$model")}
shift $(( $# < 3 ? $# : 3 ))
exec kiln run --mode "$mode" --archive "$archive" --policy "${KILN_POLICY:-strict}" -- \
  python3 -m sglang.launch_server --model-path "$model" \
  --load-format dummy --skip-tokenizer-init --context-length 2048 --random-seed 0 \
  --port "${PORT:-30000}" "$@"
