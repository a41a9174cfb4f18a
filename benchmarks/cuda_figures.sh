#!/bin/bash
# Every CUDA figure issue 4 asks for, in one go, on a machine with one NVIDIA GPU:
#   1. the flagship's 40 epochs at batch 512 (learning rate and EMA decay scaled by --batch-size)
#      from a cold start, timed end to end (reading and decoding the JPEG archive, building the
#      model, training, evaluating): target ≤ 60 s on one H100;
#   2. the throughput table against the reference loop (train_speed.py, written into
#      docs/benchmarks.md under its own CUDA marker): target ≥ 5× the reference's images/s;
#   3. what a step costs piece by piece and as a CUDA graph (step_anatomy.py, also into benchmarks.md);
#   4. the same 40 epochs at the spec's batch 128, data cached;
#   5. time to 85 % of blockspec's default path and of the reference loop (train_speed.py --to-target).
# Usage: benchmarks/cuda_figures.sh ARCHIVE [OUT_DIR [TRAIN_OPTION...]]
#   ARCHIVE: cifar10-jpeg.tar.xz (copied to /tmp first, so its decoded cache is cold);
#   OUT_DIR: where the log, each run's directory (OUT_DIR/runs/NAME) and benchmarks.md go;
#   TRAIN_OPTION: added to both training runs (a smoke test: --epochs 1 --limit-train 512).
# Environment: DEADLINE (Unix time; default 540 s from now): each step's time limit is its own
# cap or the time left, whichever is less, and a step that would get less than it needs is
# skipped, so a lease of a few minutes ends with the figures in order of importance, not cut
# mid-way through the first.
set -u
archive=${1:?usage: benchmarks/cuda_figures.sh ARCHIVE [OUT_DIR [TRAIN_OPTION...]]}
out=${2:-cuda-figures}
shift $(( $# < 2 ? $# : 2 ))
extra=("$@")
sets=()  # the spec edits among them, which train_speed.py takes too (--to-target trains the spec so edited)
for (( i = 0; i < ${#extra[@]}; i++ )); do
  case ${extra[i]} in
    --set) sets+=(--set "${extra[i + 1]:-}") ;;
    --set=*) sets+=("${extra[i]}") ;;
  esac
done
mkdir -p "$out"
log=$out/log.txt
deadline=${DEADLINE:-$(( $(date +%s) + 540 ))}
# FRESH_CACHE (an empty folder) and DATA_COPY (where the archive is copied) let a caller reuse
# the decoded data set afterwards (benchmarks/cuda_session.sh).
export PYTHONUNBUFFERED=1 XDG_CACHE_HOME=${FRESH_CACHE:-$(mktemp -d)}  # no decoded copy from before
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD  # benchmarks/*.py import blockspec from the checkout
python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || { echo "torch sees no CUDA device" >&2; exit 1; }
python3 -c "import blockspec.cli, albumentations, pydantic" || {
  echo "blockspec's packages are missing: install ../shared/wheels-gpu/*.whl first (its README)" >&2; exit 1; }
nvidia-smi -L | tee -a "$log"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" 2>&1 | tee -a "$log"
data=${DATA_COPY:-/tmp/cifar10-jpeg-$$.tar.xz}
cp "$archive" "$data"
now() { python3 -c "import time; print(time.time())"; }

limit_for() {  # title, cap, least: the seconds a step may take (its cap or what is left before the
  # deadline); when that is less than it needs, says so in the log and fails
  local left=$(( deadline - $(date +%s) ))
  if [ "$left" -lt "$3" ]; then
    echo "== $1: skipped, $left s left before the deadline" | tee -a "$log" >&2
    return 1
  fi
  echo $(( left < $2 ? left : $2 ))
}

step() {  # title, cap, least, command...: the command under its time limit
  local title=$1 limit
  limit=$(limit_for "$title" "$2" "$3") || return 0
  shift 3
  echo "== $title (at most $limit s)" | tee -a "$log"
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  echo "== $title: exit status ${PIPESTATUS[0]}" | tee -a "$log"
}

timed_run() {  # title, cap, least, name, train options...: the flagship's 40 epochs, timed from process start to exit
  local title=$1 limit name=$4 start
  limit=$(limit_for "$title" "$2" "$3") || return 0
  shift 4
  echo "== $title (at most $limit s)" | tee -a "$log"
  start=$(now)
  timeout "$limit" python3 -m blockspec train architectures/flagship.yaml --dataset imagefolder --data-root "$data" \
    --epochs 40 --out "$out/runs/$name" "$@" "${extra[@]}" 2>&1 | tee -a "$log"
  echo "== $name: ${PIPESTATUS[0]} exit status, $(python3 -c "print(round($(now) - $start, 1))") s wall" | tee -a "$log"
}

# The headline first, in case the lease ends early: 40 epochs at batch 512, from a cold start.
timed_run "flagship, batch 512 (lr and EMA decay scaled), cold start" 150 60 batch512 --batch-size 512
step "throughput against the reference loop" 150 90 \
  python3 benchmarks/train_speed.py --data-root "$data" --device cuda --steps 200 --warmup 30 --rounds 3 --workers 8 --write
cp docs/benchmarks.md "$out/benchmarks.md"
timed_run "flagship, batch 128 as the spec says (the data set decoded by the first run)" 270 120 batch128
step "a training step piece by piece, and as a CUDA graph" 120 60 \
  python3 benchmarks/step_anatomy.py --device cuda --batches 128,512 --write
cp docs/benchmarks.md "$out/benchmarks.md"
step "time to 85 % against the reference loop (each trained until it first reaches it)" 180 120 \
  python3 benchmarks/train_speed.py --data-root "$data" --device cuda --to-target 40 --workers 8 --write "${sets[@]}"
cp docs/benchmarks.md "$out/benchmarks.md"
