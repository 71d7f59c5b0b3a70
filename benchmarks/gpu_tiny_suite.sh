#!/usr/bin/env bash
# The whole suite on CUDA, for every native wm_type at tiny size: does seed determinism hold bitwise,
# with deterministic algorithms on and off, in float32 and bfloat16? Run on the GPU machine:
#   bash benchmarks/gpu_tiny_suite.sh OUT_DIR [WM_TYPES]
# Writes one junit XML and one log per variant into OUT_DIR, and prints a summary table.
set -uo pipefail
out=${1:?usage: gpu_tiny_suite.sh OUT_DIR [WM_TYPES]}
wms=${2:-svd,wan21,FTwan21,cosmos20,FTcosmos}
mkdir -p "$out"
export PYTEST_WIW_CACHE=${PYTEST_WIW_CACHE:-/tmp/wiw-gpu-cache}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c 'import torch, diffusers; print("torch", torch.__version__, "cuda", torch.version.cuda, "diffusers", diffusers.__version__)' | tee -a "$out/gpu.txt"
for variant in "float32:" "bfloat16:" "float32:--wm-nondeterministic" "bfloat16:--wm-nondeterministic"; do
  dtype=${variant%%:*}; extra=${variant#*:}
  name="cuda-${dtype}${extra:+-nondet}"
  start=$SECONDS
  python3 -m pytest -p no:cacheprovider -q -rA --wm "$wms" --wm-device cuda --wm-dtype "$dtype" $extra \
    --junitxml="$out/$name.xml" > "$out/$name.log" 2>&1
  rc=$?
  printf '%-28s rc=%s  %4ss  %s\n' "$name" "$rc" "$((SECONDS - start))" "$(tail -n 1 "$out/$name.log")"
done | tee "$out/summary.txt"
