#!/usr/bin/env bash
# The car/plane models' training on one CUDA GPU: resnet50-cifar8 pretrained for as many epochs as fit
# a time budget (measured by a short probe run first), then the three car/plane variants on top of it,
# side by side on the same GPU (each alone leaves most of it idle at its batch of 126).
#   scripts/gpu_carplane.sh [DATA] [RUNS] [PRETRAIN_SECONDS]
#   (defaults: ../shared/data/cifar10-jpeg, runs, 240; then `python -m export NAME` on any machine)
# The recipes' own settings are the 2-core-CPU ones; on the GPU the backbone trains with batch 512
# and peak learning rate 0.2 (0.1 per 256 images, as for ImageNet) and without label smoothing, which
# makes features transfer worse to a linear probe (Kornblith et al., 2021), and the variants train for
# more epochs. Every override is recorded in the checkpoint's recipe, and so in each model card.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/cifar10-jpeg}"
RUNS="${2:-runs}"
BUDGET="${3:-240}"
TRIPLET_EPOCHS=10
JOINT_EPOCHS=20
# TRAIN_ARGS: appended to every run, e.g. "--device cpu --limit 128" for a smoke test without a GPU.
train() { python -m training "$@" --data "$DATA" --device cuda --no-progress ${TRAIN_ARGS:-}; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# 1. Probe: two short epochs (the first includes cuDNN's kernel search) time one epoch of the full split.
train resnet50-cifar8 --epochs 2 --limit 10240 --batch-size 512 --lr 0.2 --label-smoothing 0 --out "$RUNS/probe" --fresh
EPOCHS=$(python - "$RUNS/probe/resnet50-cifar8/model.safetensors" "$BUDGET" "$DATA" <<'PY'
import sys
from training.checkpoint import read_metadata
from training.data import load_split
from training.recipes import RECIPES
meta = read_metadata(sys.argv[1])
history = meta["metrics"]["history"]
recipe = RECIPES["resnet50-cifar8"]
# The loader training counts with (cached by the probe): the full split's images against the probe's.
images = len(load_split(sys.argv[3], "train", recipe.input_size).only(recipe.classes))
epoch = (history[1]["seconds"] - history[0]["seconds"]) * images / meta["data"]["train_images"] + 2.0  # + eval, checkpoint
print(max(20, min(80, int(float(sys.argv[2]) / epoch))))
PY
)
echo "pretraining resnet50-cifar8 for $EPOCHS epochs"

# 2. The backbone, then the variants in parallel (each reads $RUNS/resnet50-cifar8/model.safetensors).
train resnet50-cifar8 --epochs "$EPOCHS" --batch-size 512 --lr 0.2 --label-smoothing 0 --out "$RUNS"
train carplane-linear --out "$RUNS" > "$RUNS/carplane-linear.log" 2>&1 &
train carplane-triplet --epochs "$TRIPLET_EPOCHS" --out "$RUNS" > "$RUNS/carplane-triplet.log" 2>&1 &
train carplane-joint --epochs "$JOINT_EPOCHS" --out "$RUNS" > "$RUNS/carplane-joint.log" 2>&1 &
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
tail -n 3 "$RUNS"/carplane-*.log
exit $status
