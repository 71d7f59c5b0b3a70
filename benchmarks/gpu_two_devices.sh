#!/usr/bin/env bash
# Two GPUs: pytest -n 2 over two families, each xdist worker on its own GPU (read back from the report),
# against the same run with one GPU visible. Usage: bash benchmarks/gpu_two_devices.sh OUT_DIR [WM_TYPES]
set -uo pipefail
out=${1:?usage: gpu_two_devices.sh OUT_DIR [WM_TYPES]}
wms=${2:-FTwan21,wan21,FTcosmos,cosmos20}
mkdir -p "$out"
export PYTEST_WIW_CACHE=${PYTEST_WIW_CACHE:-/tmp/wiw-gpu-cache}
nvidia-smi -L | tee "$out/gpus.txt"
# Build the tiny checkpoints first, so neither timed run pays for them.
python3 -m pytest -p no:cacheprovider -q --wm "$wms" --wm-device cpu -k registered > "$out/warmup.log" 2>&1
for visible in "0,1" "0"; do
  start=$SECONDS
  CUDA_VISIBLE_DEVICES=$visible python3 -m pytest -p no:cacheprovider -q -n 2 --wm "$wms" --wm-device cuda \
    --wm-report "$out/report-gpus-${visible/,/-}" > "$out/run-gpus-${visible/,/-}.log" 2>&1
  echo "CUDA_VISIBLE_DEVICES=$visible rc=$? wall=$((SECONDS - start))s $(tail -n 1 "$out/run-gpus-${visible/,/-}.log")"
done | tee "$out/summary.txt"
python3 - "$out" <<'PY'
import json, pathlib, sys
for rep in sorted(pathlib.Path(sys.argv[1]).glob("report-gpus-*")):
    for f in sorted(rep.glob("*.json")):
        d = json.loads(f.read_text()); e = d["environment"]
        print(rep.name, d["wm_type"], d["verdict"], "CUDA_VISIBLE_DEVICES", e.get("cuda_visible_devices"), e.get("gpu"),
              "s/gen", d["figures"].get("seconds_per_generation"))
PY
