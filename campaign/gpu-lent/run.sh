#!/bin/bash
# The one command a lent GPU host runs (device tool; carry .pack and .whl):
#   bash campaign/gpu-lent/run.sh SECONDS
# Issue 9: the CUDA inference benchmark (bundled model, bf16 and fp32) and bf16 against fp32 on the hold-out.
# Issue 10: the full-width network trained within what is left of SECONDS (plan.py), its best checkpoint
# exported in parts, and the CUDA benchmark of it. Everything it reports lands in $OUT (at most 8 files).
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
started=$(date +%s)
total=${1:-520}
left() { echo $(( total - ($(date +%s) - started) )); }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
report=$OUT/bench-cuda.txt
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  ls -la ~/.cache/torch/hub/checkpoints 2>&1
} > "$report" 2>&1
df -h /dev/shm >> "$report" 2>&1
workers=12
[ "$(df --output=avail -B1M /dev/shm 2>/dev/null | tail -1)" -lt 4096 ] 2>/dev/null && workers=2  # DataLoader batches go through /dev/shm
weights=$(timeout 20 find / -xdev \( -name 'vgg16-*.pth' -o -name 'vgg16_bn-*.pth' \) 2>/dev/null | head -1)
echo "ImageNet weights found: ${weights:-none}" >> "$report"
for precision in auto fp32; do
  echo "== bench/inference.py --device cuda --precision $precision" >> "$report"
  timeout 60 python3 bench/inference.py --device cuda --repeats 10 --precision $precision >> "$report" 2>&1
done
echo "== bench/precision.py --device cuda" >> "$report"
timeout 60 python3 bench/precision.py --device cuda --pack .pack/idrid-working.npz >> "$report" 2>&1
python3 campaign/gpu-lent/plan.py --budget-s $(( $(left) - 40 )) --out /tmp/gpu/run --export "$OUT" \
  --workers $workers ${weights:+--weights "$weights"} ${PLAN_ARGS:-} > "$OUT/plan.txt" 2>&1
if [ -f /tmp/gpu/run/best.safetensors ] && [ "$(left)" -gt 15 ]; then
  echo "== bench/inference.py --device cuda, the run's best checkpoint" >> "$report"
  timeout $(( $(left) - 5 )) python3 bench/inference.py --device cuda --repeats 5 \
    --checkpoint /tmp/gpu/run/best.safetensors >> "$report" 2>&1
fi
echo "run.sh: done after $(( $(date +%s) - started )) s" >> "$report"
