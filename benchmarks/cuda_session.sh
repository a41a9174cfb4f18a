#!/bin/bash
# One short GPU lease, used in order of importance within a fixed number of seconds:
#   1. benchmarks/cuda_figures.sh: the flagship's 40 epochs from a cold start (≤ 60 s target), the
#      throughput table against the reference loop (≥ 5× target), the batch-128 run, each step
#      limited to what is left of SECONDS and skipped when too little is;
#   2. benchmarks/cuda_variants.sh on the data set the first run decoded: the variants below
#      (Muon against SGD alone, Muon at its former rate 0.01, a second seed), JOBS runs at once on the one GPU,
#      all stopped at the deadline (finished epochs are kept);
#   3. when the variants end early: the width search (benchmarks/width_search.py, the four
#      other widths that spend ≥ 95 % of the parameter budget against the flagship's, 15 epochs
#      at batch 512, five at once) until the deadline;
#   4. the records packed into OUT_DIR/results.tgz beside the logs and the tables
#      (a lease returns at most 8 files, so the run folders stay in a scratch folder).
# Usage: benchmarks/cuda_session.sh ARCHIVE OUT_DIR SECONDS [TRAIN_OPTION...]
#   TRAIN_OPTION: added to every training run, the two timed ones and the variants
#   (e.g. --set train.cuda_graphs=true).
#   VARIANTS and JOBS pass to cuda_variants.sh (default: the candidates below, 3 at once; six runs
#   at batch 512 sharing an H200 trained slower in all than one alone, docs/benchmarks.md).
set -u
# the checkout's blockspec for every script below (run_table.py and width_search.py import it
# directly), after whatever PYTHONPATH brings (the GPU image's wheels)
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(cd "$(dirname "$0")/.." && pwd)
archive=${1:?usage: benchmarks/cuda_session.sh ARCHIVE OUT_DIR SECONDS}
out=${2:?usage: benchmarks/cuda_session.sh ARCHIVE OUT_DIR SECONDS}
seconds=${3:?usage: benchmarks/cuda_session.sh ARCHIVE OUT_DIR SECONDS}
shift 3
deadline=$(( $(date +%s) + seconds ))
work=$(mktemp -d)
mkdir -p "$out"
export FRESH_CACHE=$(mktemp -d) DATA_COPY=/tmp/cifar10-jpeg-session.tar.xz NO_ALBUMENTATIONS_UPDATE=1
export XDG_CACHE_HOME=$FRESH_CACHE  # the variants read the copy the first run decoded

pack() {
  tar czf "$out/results.tgz.part" --exclude='*.pt' --exclude='*.png' -C "$work" figures variants widths 2>/dev/null
  mv "$out/results.tgz.part" "$out/results.tgz"
  cp "$work/figures/log.txt" "$out/figures-log.txt" 2>/dev/null
  cp "$work/variants/log.txt" "$out/variants-log.txt" 2>/dev/null
  cp "$work/variants/table.md" "$out/variants-table.md" 2>/dev/null
  cp "$work/widths/table.md" "$out/widths-table.md" 2>/dev/null
  echo "== packed; $(( deadline - $(date +%s) )) s of the budget left"
}
( while sleep 30; do pack > /dev/null; done ) &  # a lease cut short still returns what was done
packer=$!
trap 'kill $packer 2>/dev/null; pack' EXIT

# With train.cuda_graphs asked for: first the graphed step against the eager one on this GPU
# (tests/test_step.py's CUDA test, where pytest's wheels came along in .whl); if it fails, the
# session trains eagerly rather than spend the lease on a path that does not hold.
if [[ " $* " =~ [\ =]train\.cuda_graphs=true\  ]] && python3 -c "import pytest" 2>/dev/null; then
  mkdir -p "$work/figures"
  timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_step.py -k cuda 2>&1 | tee "$work/figures/graph-test.txt"
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    echo "== the graphed step failed its CUDA test: this session trains without train.cuda_graphs"
    kept=()
    for (( i = 1; i <= $#; i++ )); do
      if [ "${!i}" = --set ] && (( i < $# )) && next=$(( i + 1 )) && [ "${!next}" = train.cuda_graphs=true ]; then
        i=$next
      elif [ "${!i}" = --set=train.cuda_graphs=true ]; then
        continue
      else
        kept+=("${!i}")
      fi
    done
    set -- "${kept[@]}"
  fi
fi
DEADLINE=$(( deadline - 20 )) benchmarks/cuda_figures.sh "$archive" "$work/figures" "$@"  # its steps fit the budget
echo "== variants from $(date +%T), $(( deadline - $(date +%s) )) s left"
VARIANTS=${VARIANTS:-"sgd muon01 flagship-seed1"} JOBS=${JOBS:-3} \
  DEADLINE=$(( deadline - 20 )) benchmarks/cuda_variants.sh "$DATA_COPY" "$work/variants" "$@"
left=$(( deadline - 20 - $(date +%s) ))
if [ "$left" -gt 90 ]; then
  echo "== width search from $(date +%T), $left s left"
  mkdir -p "$work/widths"
  python3 benchmarks/width_search.py architectures/flagship.yaml --stage C1=24,32,40 \
    --stage C2=48,56,64,72,80 --stage C3+C4=96,112,128,144,160 --min-share 0.95 --train \
    --out "$work/widths" --jobs 5 --deadline $(( deadline - 20 )) \
    -- --epochs 15 --batch-size 512 --dataset imagefolder --data-root "$DATA_COPY" "$@" 2>&1 | tee "$work/widths/log.txt"
fi
