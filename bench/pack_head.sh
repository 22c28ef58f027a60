#!/usr/bin/env bash
# Pack the committed tree for a GPU machine (copy it there and untar it: edits to the working
# tree cannot change that build), with a COMMIT file that the GPU scripts
# (bench/device_run.sh, bench/vllm_device_run.sh) export as KILN_COMMIT for the result files.
#   usage: bash bench/pack_head.sh [TARBALL]      (default scratch/head.tar)
set -euo pipefail
tarball=${1:-scratch/head.tar}
mkdir -p "$(dirname "$tarball")"
git archive HEAD -o "$tarball"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git rev-parse HEAD > "$tmp/COMMIT"
tar --append -f "$tarball" -C "$tmp" COMMIT
