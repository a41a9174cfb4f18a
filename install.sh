#!/usr/bin/env bash
# Install blockspec into the current Python environment.
#
# Without a CUDA GPU, torch is pinned to the CPU build first (2.13.0 / torchvision 0.28.0),
# so pip does not download gigabytes of CUDA wheels; with one, pip's normal resolution of
# `torch>=2.1` applies (an existing CUDA torch is kept). `--test` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
extras=""
if [ "${1:-}" = "--test" ]; then extras="[test]"; fi

if ! (command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1); then
  cpu_index=()
  # The CPU wheel index is used only when reachable (pip retries unreachable indexes
  # for minutes); otherwise the pin alone picks a locally provided CPU wheel.
  if "$python" -c "import urllib.request as u; u.urlopen('https://download.pytorch.org/whl/cpu/torch/', timeout=3)" >/dev/null 2>&1; then
    cpu_index=(--extra-index-url https://download.pytorch.org/whl/cpu)
  fi
  "$python" -m pip install --quiet ${cpu_index[@]+"${cpu_index[@]}"} "torch==2.13.0" "torchvision==0.28.0"  # bash 3.2 (macOS): an empty array is "unbound" under set -u
fi
"$python" -m pip install --quiet -e ".${extras}"
