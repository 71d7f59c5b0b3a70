#!/usr/bin/env bash
# Realistic sizes on one GPU (issue 6): build random checkpoints of real shapes, measure the loading
# ceilings, run the suite on them, and the suite against its floor. Run on the GPU machine:
#   bash benchmarks/gpu_realistic.sh OUT_DIR [STAGES]
# STAGES (default "build ceilings suites floor"): any of them; build is skipped when CKPT_DIR
# (default .bench/ckpt, $WIW_CKPT_DIR) already holds the checkpoints. The suites run on GPU 0.
# Writes logs, junit XML and reports under OUT_DIR; prints a summary table last.
set -uo pipefail
out=${1:?usage: gpu_realistic.sh OUT_DIR [STAGES]}
stages=${2:-build ceilings suites floor}
ck=${WIW_CKPT_DIR:-$PWD/.bench/ckpt}
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
mkdir -p "$out"
export PYTEST_WIW_CACHE=${PYTEST_WIW_CACHE:-/tmp/wiw-gpu-cache}
drop_cache() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import torch, diffusers; print("torch", torch.__version__, "cuda", torch.version.cuda, "diffusers", diffusers.__version__)'
  df -h "$(dirname "$ck")" | tail -1; nproc; free -g | sed -n 2p; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

has() { [[ " $stages " == *" $1 "* ]]; }

if has build && [ ! -f "$ck/summary.json" ]; then
  start=$SECONDS
  python3 benchmarks/realistic_checkpoints.py "$ck" > "$out/build.log" 2>&1
  echo "build: $((SECONDS - start)) s"; grep '^\(wan21\|FTwan21\|cosmos20\|FTcosmos\) ' "$out/build.log"
fi

if has ceilings; then
  python3 benchmarks/load_ceilings.py "$ck/wan21" "$ck/cosmos20" > "$out/ceilings.jsonl" 2> "$out/ceilings.err"
  cat "$out/ceilings.jsonl"
fi

suite() {  # suite NAME WM_TYPES... : one pytest session over real checkpoints, page cache dropped first
  local name=$1; shift
  local args=()
  for wm in "$@"; do args+=(--wm "$wm" --ckpt-path "$wm=$ck/$wm"); done
  drop_cache
  local t0=$SECONDS
  python3 -m pytest -p no:cacheprovider -q -rA "${args[@]}" --wm-device cuda --wm-dtype bfloat16 \
    --wm-max-examples 2 --wm-report "$out/$name" --junitxml="$out/$name.xml" > "$out/$name.log" 2>&1
  echo "suite $name: rc=$? $((SECONDS - t0)) s: $(tail -n 1 "$out/$name.log")"
}
if has suites; then
  suite wan wan21 FTwan21
  suite cosmos cosmos20 FTcosmos
  python3 benchmarks/summarize_reports.py "$out/wan" "$out/cosmos" | tee "$out/summary.md"
fi

has floor && python3 benchmarks/bench_floor.py --device cuda --dtype bfloat16 \
  --ckpt-path "FTwan21=$ck/FTwan21" --ckpt-path "FTcosmos=$ck/FTcosmos" FTwan21 FTcosmos \
  > "$out/bench_floor.md" 2> "$out/bench_floor.err"
has floor && cat "$out/bench_floor.md"
