"""On a GPU host: the GPU memory the workers used comes back when the session ends, also on Ctrl-C.

Skipped without CUDA (the CI machine has none). On the CPU the same property is proven by process
exit: no worker process remains after a session (test_interrupt.py, test_bad_checkpoints.py), and a
process that no longer exists holds no GPU memory. Here it is measured directly: the device's free
memory before a session and after it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from conftest import make_checks_dir, run_checks, sigint_as_in_a_terminal

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# What may differ between two readings of free device memory without any worker (allocator noise of
# other processes on a shared card).
NOISE_BYTES = 256 * 2**20


def free_bytes() -> int:
    torch.cuda.synchronize()
    return torch.cuda.mem_get_info()[0]


def test_gpu_memory_comes_back_after_a_session(tmp_path, run_env):
    before = free_bytes()
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd,FTwan21", "--wm-device", "cuda")
    assert run.returncode == 0, run.output[-3000:]
    assert int(run["test_memory_stable[svd]"].properties["peak_gpu_bytes"]) > 0  # the worker did use the GPU
    assert free_bytes() >= before - NOISE_BYTES


def test_gpu_memory_comes_back_after_ctrl_c(tmp_path, run_env):
    before = free_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--wm", "svd-hangs",
                             "--wm-device", "cuda", "--wm-timeout", "600"], cwd=make_checks_dir(tmp_path / "run"),
                            env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=sigint_as_in_a_terminal)
    deadline = time.monotonic() + 120
    while free_bytes() >= before - NOISE_BYTES and time.monotonic() < deadline:
        time.sleep(0.5)  # until the worker holds GPU memory
    assert free_bytes() < before - NOISE_BYTES, "the worker never allocated on the GPU"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    time.sleep(2)
    assert free_bytes() >= before - NOISE_BYTES


#: Issue 15's bound: an FT type's floor (FT and zero-shot calls) within this factor of its base alone.
FT_OVER_BASE_MAX = 1.05


def test_ft_and_zero_shot_peak_stays_near_the_base_alone_with_offload(tmp_path, run_env):
    """--wm-offload pinned (the default): FTcosmos's worker, which also runs the base inside zero_shot(),
    peaks within FT_OVER_BASE_MAX of cosmos20's worker (the base pipeline alone), and reports its two swaps."""
    import json

    workdir = make_checks_dir(tmp_path / "run")
    run = run_checks(workdir, run_env, "--wm", "cosmos20,FTcosmos", "--wm-device", "cuda",
                     f"--wm-report={workdir / 'out'}")
    assert run.returncode == 0, run.output[-3000:]
    base = int(run["test_memory_stable[cosmos20]"].properties["peak_gpu_bytes"])
    ft = int(run["test_memory_stable[FTcosmos]"].properties["peak_gpu_bytes"])
    assert ft <= FT_OVER_BASE_MAX * base, (ft, base)
    offload = json.loads((workdir / "out" / "FTcosmos.json").read_text())["wrapper_stats"]["offload"]
    assert offload["pinned"] is True and offload["swaps"] == 2
