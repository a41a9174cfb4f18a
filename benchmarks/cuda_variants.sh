#!/bin/bash
# The flagship's recipe varied one field at a time, 40 epochs each, side by side: the search for
# 90 % by epoch 40 that takes an hour a run on the development CPU and about a minute on a GPU.
# Each variant is the flagship file plus `--set` edits, so every run is reproducible from the
# repository; run benchmarks/cuda_figures.sh first (it measures the figures the issue asks for).
# Usage: benchmarks/cuda_variants.sh DATA_ROOT [OUT_DIR [TRAIN_OPTION...]]
#   DATA_ROOT: the CIFAR-10 JPEG archive or its unpacked folder;
#   OUT_DIR: one run directory per variant, the log and the side-by-side table (table.md);
#   TRAIN_OPTION: added to every run (a smoke test: --epochs 1 --limit-train 512 --limit-test 512).
# Environment: VARIANTS (names to run, space-separated; default every variant below, seed 0;
# NAME-seedN is variant NAME with train.seed=N, e.g. flagship-seed1 or nohole-seed2), JOBS (runs at once on the
# one GPU, default 1: a small network's steps leave the GPU idle between kernel launches, so a
# few processes share it well), DEADLINE (Unix time by which every run is stopped; a stopped
# run keeps the epochs it finished in metrics.json).
set -u
data=${1:?usage: benchmarks/cuda_variants.sh DATA_ROOT [OUT_DIR [TRAIN_OPTION...]]}
out=${2:-cuda-variants}
shift $(( $# < 2 ? $# : 2 ))
extra=("$@")
mkdir -p "$out"
export PYTHONUNBUFFERED=1

variants=(  # name, then its edits (none: the flagship as written; `relu`: its ReLU predecessor)
  "flagship"
  "sgd train.optimizer.name=sgd"
  "muon01 train.optimizer.muon_lr=0.01"
  "peak25 train.scheduler.pct_start=0.25"
  "momentum09 train.scheduler.cycle_momentum=false train.optimizer.momentum=0.9"
  "smoothing0 train.label_smoothing=0.0"
  "decay1e-3 train.optimizer.weight_decay=1.0e-3"
  "lr02 train.optimizer.lr=0.2"
  "nohole data.augment[2].CoarseDropout.p=0.0"
  "nohole-decay2.5e-4 data.augment[2].CoarseDropout.p=0.0 train.optimizer.weight_decay=2.5e-4"
  "nohole-shift4 data.augment[2].CoarseDropout.p=0.0 data.augment[1]={\"Affine\":{\"translate_px\":[-4,4],\"p\":1.0}}"
  "midact blocks.C3[0].dws.mid_act=true blocks.C3[1].residual.body[0].dws.mid_act=true blocks.C3[1].residual.body[1].dws.mid_act=gelu blocks.C4[0].residual.body[0].dws.mid_act=true blocks.C4[0].residual.body[1].dws.mid_act=gelu"
  "shift1 train.tta_shift=1"
  "shift4 data.augment[1]={\"Affine\":{\"translate_px\":[-4,4],\"p\":1.0}}"
  "shift4reflect data.augment[1]={\"Affine\":{\"translate_px\":[-4,4],\"p\":1.0,\"border_mode\":4}}"
  "reflect data.augment[1].Affine.border_mode=4"
  "altflip data.alternate_flip=true"
  "reflect-altflip data.augment[1].Affine.border_mode=4 data.alternate_flip=true"
  "holeoff5 data.augment_off.last_epochs=5 data.augment_off.transforms=[CoarseDropout]"
  "stage8 blocks.C3[0].dws.stride=2 blocks.C4[0].residual.body[0].dws.dilation=1"
  "silu defaults.act=silu blocks.C1[1].residual.act=silu blocks.C2[1].residual.act=silu blocks.C3[1].residual.act=silu blocks.C4[0].residual.act=silu"
  "relu defaults.act=relu blocks.C1[1].residual.act=relu blocks.C2[1].residual.act=relu blocks.C3[1].residual.act=relu blocks.C4[0].residual.act=relu"
  "c2at32 blocks.C2[0]={\"conv\":{\"out\":64}} blocks.C3[0].dws.stride=2 blocks.C4[0].residual.body[0].dws.dilation=4"
  "whiten train.whiten_stem=frozen"
  "nowhiten train.whiten_stem=false"
)

jobs=${JOBS:-1}
deadline=${DEADLINE:-$(( $(date +%s) + 86400 ))}
if [ "$jobs" -gt 1 ]; then  # decode once, not once per run started together
  python3 -c "import sys; from blockspec.data import load_dataset; load_dataset('imagefolder', sys.argv[1])" "$data"
fi
declare -A edits_of
order=()
for line in "${variants[@]}"; do
  read -r name edits <<< "$line"
  edits_of[$name]=$edits
  order+=("$name")
done
names=()
for name in ${VARIANTS:-${order[@]}}; do
  base=$name edits=${edits_of[$name]-}
  if [ -z "${edits_of[$name]+known}" ] && [[ $name =~ ^(.+)-seed([0-9]+)$ ]]; then
    base=${BASH_REMATCH[1]} edits="${edits_of[${BASH_REMATCH[1]}]-} train.seed=${BASH_REMATCH[2]}"
  fi
  [ -z "${edits_of[$base]+known}" ] && { echo "== $name: unknown variant (known: ${order[*]})" | tee -a "$out/log.txt"; continue; }
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  left=$(( deadline - $(date +%s) ))
  [ "$left" -le 0 ] && { echo "== $name: not started, the deadline has passed" | tee -a "$out/log.txt"; continue; }
  sets=()
  for edit in $edits; do sets+=(--set "$edit"); done
  echo "== $name: ${edits:-the flagship as written}" | tee -a "$out/log.txt"
  timeout "$left" python3 -m blockspec train architectures/flagship.yaml --dataset imagefolder --data-root "$data" \
    --out "$out/$name" "${sets[@]}" "${extra[@]}" > "$out/$name.log" 2>&1 &
  names+=("$name")
done
wait
runs=()
for name in "${names[@]}"; do
  echo "== $name" >> "$out/log.txt"; cat "$out/$name.log" >> "$out/log.txt"
  [ -f "$out/$name/summary.json" ] && runs+=("$out/$name")
done
python3 benchmarks/run_table.py "${runs[@]}" --epochs 1,5,10,13,14,15,20,25,30,35,38,39,40 | tee "$out/table.md"
