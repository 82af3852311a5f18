#!/usr/bin/env bash
# GPU check, for a machine with CUDA (not verified on a GPU yet).
# Trains every model briefly on the GPU, exports it, checks PyTorch-on-GPU against the exported ONNX,
# and runs the benchmark with PyTorch on the GPU. Where onnxruntime-gpu is missing, zoo's own sessions
# run on the CPU provider; the JSON records that.
#   scripts/gpu_check.sh [OUT]      (default OUT: gpu-check/; data where the recipes expect it, ../shared/data,
#                                    or ZOO_DATA for the benchmark)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-check}"
mkdir -p "$OUT"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch, onnxruntime as ort; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
print('torch', torch.__version__, torch.cuda.get_device_name(0), '| onnxruntime', ort.__version__, ort.get_available_providers())" \
  | tee -a "$OUT/gpu.txt"

# 1. Train briefly (1 epoch on 2,048 images; the changer 2,048 pairs), in recipe order: the car/plane
#    models start from resnet50-cifar8's run in the same folder. Deformable layers use torchvision's CUDA kernel.
for name in $(python -c "from training.recipes import RECIPES; print(*RECIPES)"); do
  python -m training "$name" --epochs 1 --limit 2048 --device cuda --out "$OUT/runs" --no-progress --fresh
done

# 2. Export (export validates onnxruntime against PyTorch itself, on the CPU) into a separate models folder.
python -m export all --runs "$OUT/runs" --out "$OUT/models"

# 3. Parity on the GPU: each network on CUDA against zoo's session of the exported model.
ZOO_HOME="$OUT/models" python - <<'PY' | tee "$OUT/parity.txt"
import numpy as np, torch, zoo
from bench.timing import random_feeds
from bench.torch_engines import first_output, torch_module, torch_runner
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 against fp32
for name in zoo.list():
    card, model = zoo.card(name), zoo.load(name)
    deformable = card.provenance["architecture"]["config"].get("deformable")
    module = torch_module(card, "torchvision" if deformable else None).cuda()
    feeds = random_feeds(card, 64, seed=3)
    gpu = first_output(torch_runner(module, card)(feeds))
    ort = model.session.run(None, feeds)[0]
    agree = float((gpu.argmax(1) == ort.argmax(1)).mean())
    print(f"{name}: onnxruntime on {model.device} vs torch on cuda: max |diff| {np.abs(gpu - ort).max():.2e}, argmax agreement {agree:.2%}")
    assert np.abs(gpu - ort).max() < 1e-3 and agree == 1.0, name
PY

# 4. The benchmark with PyTorch (eager, torch.compile) on the GPU.
ZOO_HOME="$OUT/models" python -m bench --data "${ZOO_DATA:-../shared/data}" --torch-device cuda --json "$OUT/bench-gpu.json" | tee "$OUT/bench-gpu.md"
echo "gpu_check: results in $OUT/"
