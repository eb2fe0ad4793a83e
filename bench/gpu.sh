#!/usr/bin/env bash
# The GPU benchmark in one command, on a CUDA machine whose python3 has torch but not diffusers.
#   bash bench/gpu.sh [MODELS] [EXTRA ARGS...]      e.g.  bash bench/gpu.sh sd15,sdxl
# Wheels for what is missing (diffusers, open_clip_torch for the CLIP vocabulary, xformers, importlib_metadata) are
# taken from .whl/ when present (download them with bench/wheels.sh on a machine with internet).
# Results: $OUT (or bench/results) /gpu-MODELS.json and a log; the table is printed last.
set -o pipefail
cd "$(dirname "$0")/.."
OUTDIR="${OUT:-bench/results}"
mkdir -p "$OUTDIR"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor-cache}
MODELS="${1:-sd15,sdxl}"; shift || true
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader 2>&1 | tee "$OUTDIR/gpu-$MODELS.log"
python3 -c "import xformers, xformers.ops, torch; q=torch.randn(1,64,8,40,device='cuda',dtype=torch.half); xformers.ops.memory_efficient_attention(q,q,q); print('xformers', xformers.__version__, 'loads and runs')" 2>&1 | tail -3 | tee -a "$OUTDIR/gpu-$MODELS.log"
python3 -m bench --device cuda --models "$MODELS" --out "$OUTDIR/gpu-$MODELS.json" "$@" 2>&1 | tee -a "$OUTDIR/gpu-$MODELS.log"
