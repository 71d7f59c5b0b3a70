#!/usr/bin/env bash
# Issue 15's goals at realistic sizes on one GPU, one stage per command (each fits a 10-minute command on an
# H200; a stage builds the random real-shape checkpoints it needs when CKPT_DIR lacks them: about 30 s for the
# Cosmos pair there), then one table:
#
#   bash benchmarks/gpu_realistic.sh OUT_DIR STAGE [STAGE ...]
#
# STAGEs:
#   floor-FTwan21 floor-FTcosmos floor-FTltx floor-igen   suite / floor, median of $REPEAT (default 3)
#                                                          interleaved pairs, --wm-max-examples 0 (goal <= 1.10x);
#                                                          NO_WARMUP=1 skips the warm-up floor (the build just wrote
#                                                          the files: they are in the page cache)
#   memory-FTwan21 memory-FTcosmos memory-FTltx memory-igen   FT + zero-shot peak GPU memory against the base
#                                                          pipeline alone, --wm-offload pinned and none (goal <= 1.05x)
#   ceilings-wan ceilings-cosmos ceilings-ltx ceilings-igen   the wrappers' load against the page-cache-warm
#                                                          and the cold-disk load_file(device="cuda") ceilings (>= 90%)
#   table    (no GPU needed) OUT_DIR/table.md from every stage's JSON under OUT_DIR (and under any further
#            folders named in $TABLE_DIRS): figure, goal, measured, ratio, with card, driver and date
#
# Each stage writes OUT_DIR/<stage>.json, its log OUT_DIR/<stage>.log and OUT_DIR/machine-<stage>.json.
set -uo pipefail
out=${1:?usage: gpu_realistic.sh OUT_DIR STAGE [STAGE ...]}
shift
[ $# -gt 0 ] || { echo "usage: gpu_realistic.sh OUT_DIR STAGE [STAGE ...]" >&2; exit 2; }
ck=${WIW_CKPT_DIR:-$PWD/.bench/ckpt}
repeat=${REPEAT:-3}
dtype=${WIW_DTYPE:-bfloat16}
# igen at WIW's 1024x576 and 14 frames, with fewer steps than WIW's 30 so three suite/floor pairs fit one command
igen_steps=${IGEN_STEPS:-8}
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
export PYTEST_WIW_CACHE=${PYTEST_WIW_CACHE:-/tmp/wiw-gpu-cache}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out" "$ck"

machine() {  # machine STAGE: the card, driver and date this stage ran with
  python3 - "$1" > "$out/machine-$1.json" <<'EOF'
import datetime, json, subprocess, sys
try:
    name, driver, memory = [x.strip() for x in subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True, text=True, check=True).stdout.splitlines()[0].split(",")]
except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
    name = driver = memory = "no GPU"
import torch
print(json.dumps({"stage": sys.argv[1], "card": name, "driver": driver, "memory": memory, "torch": torch.__version__,
                  "cuda": torch.version.cuda, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}))
EOF
}

build() {  # build FAMILY: the family's base and FT checkpoints, unless CKPT_DIR holds them
  case $1 in
    wan) [ -f "$ck/FTwan21/README.md" ] || python3 benchmarks/realistic_checkpoints.py "$ck" --only wan21,FTwan21 ;;
    cosmos) [ -f "$ck/FTcosmos/README.md" ] || python3 benchmarks/realistic_checkpoints.py "$ck" --only cosmos20,FTcosmos ;;
    ltx) [ -f "$ck/FTltx/README.md" ] || python3 benchmarks/realistic_checkpoints.py "$ck" --only ltx,FTltx ;;
    igen) [ -f "$ck/igen-real/igen/checkpoint-6000/README.md" ] ||
            python3 benchmarks/igen_real_size.py "$ck/igen-real" --fp16-only --steps "$igen_steps" ;;
  esac
}

# FT type -> family, its checkpoint and its base's
family() { case $1 in FTwan21) echo wan ;; FTcosmos) echo cosmos ;; FTltx) echo ltx ;; igen) echo igen ;; esac; }
ft_path() { case $1 in igen) echo "$ck/igen-real/igen/checkpoint-6000" ;; *) echo "$ck/$1" ;; esac; }
base_of() { case $1 in wan) echo "wan21=$ck/wan21" ;; cosmos) echo "cosmos20=$ck/cosmos20" ;; ltx) echo "ltx=$ck/ltx" ;;
            igen) echo "svd=$ck/igen-real/svd" ;; esac; }
ft_of() { case $1 in wan) echo FTwan21 ;; cosmos) echo FTcosmos ;; ltx) echo FTltx ;; igen) echo igen ;; esac; }

run_stage() {
  local stage=$1 t0=$SECONDS
  machine "$stage"
  case $stage in
    floor-*)
      local wm=${stage#floor-}
      build "$(family "$wm")" &&
      python3 benchmarks/bench_floor.py --device cuda --dtype "$dtype" --repeat "$repeat" ${NO_WARMUP:+--no-warmup} \
        --ckpt-path "$wm=$(ft_path "$wm")" --json "$out/$stage.json" "$wm" ;;
    memory-*)
      local wm=${stage#memory-}
      build "$(family "$wm")" &&
      python3 benchmarks/ft_memory.py --device cuda --dtype "$dtype" --offload pinned --json "$out/$stage.json" \
        "$wm=$(ft_path "$wm")" &&
      python3 benchmarks/ft_memory.py --device cuda --dtype "$dtype" --offload none --json "$out/$stage-none.json" \
        "$wm=$(ft_path "$wm")" ;;
    ceilings-*)
      local fam=${stage#ceilings-}
      local ft; ft=$(ft_of "$fam")
      build "$fam" &&
      python3 benchmarks/load_ceilings.py --device cuda --dtype "$dtype" --json "$out/$stage.json" \
        "$(base_of "$fam")" "$ft=$(ft_path "$ft")" ;;
    table)
      # shellcheck disable=SC2086
      python3 benchmarks/bench_table.py "$out" ${TABLE_DIRS:-} > "$out/table.md" && cat "$out/table.md" ;;
    *) echo "unknown stage $stage" >&2; return 2 ;;
  esac
  local rc=$?
  echo "stage $stage: rc=$rc, $((SECONDS - t0)) s"
  return $rc
}

status=0
for stage in "$@"; do
  if [ "$stage" = table ]; then run_stage "$stage" || status=1; continue; fi
  run_stage "$stage" > >(tee "$out/$stage.log") 2>&1 || status=1
done
exit $status
