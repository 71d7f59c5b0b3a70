#!/usr/bin/env bash
# Two GPUs: pytest -n 2 over two families, each xdist worker on its own GPU (read back from the report),
# against one GPU. Usage: bash benchmarks/gpu_two_devices.sh OUT_DIR [WM_TYPES] [CKPT_DIR]
# Without CKPT_DIR: tiny checkpoints, float32; one GPU means the same `-n 2` run with one GPU visible.
# With CKPT_DIR (benchmarks/realistic_checkpoints.py output): --ckpt-path WM=CKPT_DIR/WM for each type,
# bfloat16, and one GPU means a serial run (no -n) on GPU 0, then -n 2 sharing GPU 0.
set -uo pipefail
out=${1:?usage: gpu_two_devices.sh OUT_DIR [WM_TYPES] [CKPT_DIR]}
wms=${2:-FTwan21,wan21,FTcosmos,cosmos20}
ck=${3:-}
mkdir -p "$out"
export PYTEST_WIW_CACHE=${PYTEST_WIW_CACHE:-/tmp/wiw-gpu-cache}
nvidia-smi -L | tee "$out/gpus.txt"
args=(--wm "$wms" --wm-device cuda)
if [ -n "$ck" ]; then
  for wm in ${wms//,/ }; do args+=(--ckpt-path "$wm=$ck/$wm"); done
  args+=(--wm-dtype bfloat16 --wm-max-examples 2)
  runs=("0,1:-n 2" "0:" "0:-n 2")
else
  # Build the tiny checkpoints first, so neither timed run pays for them.
  python3 -m pytest -p no:cacheprovider -q --wm "$wms" --wm-device cpu -k registered > "$out/warmup.log" 2>&1
  runs=("0,1:-n 2" "0:-n 2")
fi
for run in "${runs[@]}"; do
  visible=${run%%:*}; xdist=${run#*:}
  name="gpus-${visible/,/-}${xdist:+-n2}"
  start=$SECONDS
  CUDA_VISIBLE_DEVICES=$visible python3 -m pytest -p no:cacheprovider -q $xdist "${args[@]}" \
    --wm-report "$out/report-$name" > "$out/run-$name.log" 2>&1
  echo "CUDA_VISIBLE_DEVICES=$visible ${xdist:-serial} rc=$? wall=$((SECONDS - start))s $(tail -n 1 "$out/run-$name.log")"
done | tee "$out/summary.txt"
python3 - "$out" <<'PY'
import json, pathlib, sys
for rep in sorted(pathlib.Path(sys.argv[1]).glob("report-gpus-*")):
    for f in sorted(rep.glob("*.json")):
        d = json.loads(f.read_text()); e = d["environment"]; fig = d["figures"]
        print(rep.name, d["wm_type"], d["verdict"], "CUDA_VISIBLE_DEVICES", e.get("cuda_visible_devices"), e.get("gpu"),
              "load s", fig.get("load_seconds"), "s/gen", fig.get("seconds_per_generation"))
PY
