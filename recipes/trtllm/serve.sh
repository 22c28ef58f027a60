#!/usr/bin/env bash
# TensorRT-LLM's OpenAI server (PyTorch backend) through kiln.  NOT RUN: no TensorRT-LLM
# could be installed in the project (docs/trtllm/adapter.md, "What has and has not run").
#   usage: recipes/trtllm/serve.sh save|load|auto MODEL [ARCHIVE_DIR] [extra trtllm-serve args...]
# SAVE and LOAD must get the same arguments: the settings are part of the archive fingerprint.
set -euo pipefail
mode=${1:?usage: serve.sh save|load|auto MODEL [ARCHIVE_DIR] [trtllm-serve args...]}
model=${2:?a model directory or Hugging Face id}
archive=${3:-/tmp/kiln-archives/trtllm-$(basename "$model")}
shift $(( $# < 3 ? $# : 3 ))
here=$(cd "$(dirname "$0")" && pwd)
exec kiln run --mode "$mode" --archive "$archive" --policy "${KILN_POLICY:-strict}" -- \
  trtllm-serve serve "$model" --backend pytorch --tp_size 1 \
  --extra_llm_api_options "$here/llm_api_options.yaml" \
  --port "${PORT:-8000}" "$@"
