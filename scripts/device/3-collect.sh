#!/bin/bash
# Call 3: return carplane-joint, the logs, and this GPU's bf16 matmul ceiling (for the training-rate figures).
python3 scripts/device/carry_runs.py pack /tmp/runs carplane-joint $OUT
nvidia-smi > /tmp/runs/nvidia-smi.txt
python3 - <<'PY' | tee /tmp/runs/ceiling.txt
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(10): a @ b
torch.cuda.synchronize(); s = (time.perf_counter() - t) / 10
print(f"bf16 matmul 8192^3: {2 * 8192**3 / s / 1e12:.0f} TFLOP/s")
PY
tar czf $OUT/logs.tar.gz /tmp/train.log /tmp/runs/*.log /tmp/runs/*.txt
ls -la $OUT
