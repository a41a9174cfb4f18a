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
#   OUT_DIR: where the log, each run's metrics.json/summary.json and benchmarks.md go;
#   TRAIN_OPTION: added to both training runs (a smoke test: --epochs 1 --limit-train 512).
set -u
archive=${1:?usage: benchmarks/cuda_figures.sh ARCHIVE [OUT_DIR [TRAIN_OPTION...]]}
out=${2:-cuda-figures}
shift $(( $# < 2 ? $# : 2 ))
extra=("$@")
mkdir -p "$out"
log=$out/log.txt
# FRESH_CACHE (an empty folder) and DATA_COPY (where the archive is copied) let a caller reuse
# the decoded data set afterwards (benchmarks/cuda_session.sh).
export PYTHONUNBUFFERED=1 XDG_CACHE_HOME=${FRESH_CACHE:-$(mktemp -d)}  # no decoded copy from before
python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || { echo "torch sees no CUDA device" >&2; exit 1; }
nvidia-smi -L | tee -a "$log"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" 2>&1 | tee -a "$log"
data=${DATA_COPY:-/tmp/cifar10-jpeg-$$.tar.xz}
cp "$archive" "$data"
now() { python3 -c "import time; print(time.time())"; }

timed_run() {  # name, time limit in seconds, extra train options
  local name=$1 limit=$2 start
  shift 2
  start=$(now)
  timeout "$limit" python3 -m blockspec train architectures/flagship.yaml --dataset imagefolder \
    --data-root "$data" --epochs 40 --out "/tmp/runs-$$/$name" "$@" "${extra[@]}" 2>&1 | tee -a "$log"
  echo "== $name: ${PIPESTATUS[0]} exit status, $(python3 -c "print(round($(now) - $start, 1))") s wall" | tee -a "$log"
  cp "/tmp/runs-$$/$name/metrics.json" "$out/$name-metrics.json"
  cp "/tmp/runs-$$/$name/summary.json" "$out/$name-summary.json"
  cp "/tmp/runs-$$/$name/spec.yaml" "$out/$name-spec.yaml"
}

# The headline first, in case the lease ends early: 40 epochs at batch 512, from a cold start.
echo "== flagship, batch 512 (lr and EMA decay scaled), cold start" | tee -a "$log"
timed_run batch512 150 --batch-size 512
echo "== throughput against the reference loop" | tee -a "$log"
timeout 150 python3 benchmarks/train_speed.py --data-root "$data" --device cuda \
  --steps 50 --warmup 10 --rounds 3 --workers 8 --write 2>&1 | tee -a "$log"
cp docs/benchmarks.md "$out/benchmarks.md"
echo "== a training step piece by piece, and as a CUDA graph" | tee -a "$log"
timeout 120 python3 benchmarks/step_anatomy.py --device cuda --batches 128,512 --write 2>&1 | tee -a "$log"
cp docs/benchmarks.md "$out/benchmarks.md"
echo "== flagship, batch 128 as the spec says (the data set decoded by the first run)" | tee -a "$log"
timed_run batch128 270
echo "== time to 85 % against the reference loop (each trained until it first reaches it)" | tee -a "$log"
timeout 180 python3 benchmarks/train_speed.py --data-root "$data" --device cuda --to-target 40 --workers 8 \
  --write 2>&1 | tee -a "$log"
cp docs/benchmarks.md "$out/benchmarks.md"
