#!/usr/bin/env bash
# Slurm: one array task per shard, one GPU each; then merge with `pytest-wiw report`.
#   sbatch docs/ci/wiw-slurm.sh            (runs the 4 shards)
#   pytest-wiw report reports/shard-* --out reports/merged   (after they finish; exits 1 on a failed verdict)
#SBATCH --job-name=wiw-conformance
#SBATCH --array=1-4
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
set -euo pipefail
source .venv/bin/activate
export PYTEST_WIW_CACHE=${PYTEST_WIW_CACHE:-$HOME/.cache/pytest-wiw}
pytest --wm all --wm-shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}" \
  --wm-report="reports/shard-${SLURM_ARRAY_TASK_ID}" --junitxml "reports/shard-${SLURM_ARRAY_TASK_ID}/junit.xml"
