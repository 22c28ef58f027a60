#!/usr/bin/env bash
# Pack the committed tree for the device machine (carry it and untar it there: helpers
# editing the working tree cannot break that build), with a COMMIT file that the device
# scripts export as KILN_COMMIT for the result files.
#   usage: bash bench/pack_head.sh [scratch/head.tar]
set -euo pipefail
out=${1:-scratch/head.tar}
mkdir -p "$(dirname "$out")"
git archive HEAD -o "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git rev-parse HEAD > "$tmp/COMMIT"
tar --append -f "$out" -C "$tmp" COMMIT
