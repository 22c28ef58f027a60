#!/usr/bin/env bash
# vllm serve through kiln with a dummy-weight model config (no download, no tokenizer).
#   usage: recipes/vllm/serve.sh save|load|auto [MODEL_DIR] [ARCHIVE_DIR] [extra vllm serve args...]
# SAVE and LOAD must get the same arguments: the command is part of the archive fingerprint.
set -euo pipefail
mode=${1:?usage: serve.sh save|load|auto [MODEL_DIR] [ARCHIVE_DIR] [vllm serve args...]}
model=${2:-bench/models/qwen3-0.6b}
archive=${3:-/tmp/kiln-archives/$(basename "$model")}
shift $(( $# < 3 ? $# : 3 ))
export VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0}  # see README
exec kiln run --mode "$mode" --archive "$archive" --policy "${KILN_POLICY:-strict}" -- \
  python3 -m vllm.entrypoints.cli.main serve "$model" \
  --load-format dummy --skip-tokenizer-init --max-model-len 2048 --seed 0 "$@"
