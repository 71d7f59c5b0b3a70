"""Check: the memory the worker reports after each call it made does not keep growing."""

import pytest

from pytest_wiw.checks import check, fail, record, require, require_upstream

MIB = 2**20
# Host RSS wobbles as the allocator warms up; a leak of real outputs (tens of MiB per call at real
# sizes) passes this bound within a call or two.
HOST_GROWTH_BOUND = 64 * MIB
HOST_GROWTH_FRACTION = 0.05
# torch.cuda.memory_allocated counts live tensors exactly: anything kept across calls shows.
GPU_GROWTH_BOUND = 16 * MIB


def _growth(samples, bound):
    """(total growth, whether it grew at every call) for a series of byte counts."""
    growth = samples[-1] - samples[0]
    monotone = all(b > a for a, b in zip(samples, samples[1:]))
    return growth, monotone and growth > bound


@check("memory stable")
def test_memory_stable(wm, wiw_record):
    """Host RSS and GPU memory after G1, G2, G3 (and Z) stay within a bound (no extra generations)."""
    require_upstream(wm, "memory stable")
    floor = require(wm.floor, "memory stability")
    replies = [g.reply for g in (floor.g1, floor.g2, floor.g3, floor.z)
               if g is not None and g.reply is not None and g.reply.memory]
    if len(replies) < 3:
        pytest.skip("fewer than three generation calls reported their memory (a legacy worker, or calls failed)")
    host = [r.memory["host_rss"] for r in replies]
    gpu = [r.memory["gpu_allocated"] for r in replies if r.memory.get("gpu_allocated") is not None]
    record(wiw_record, wm, host_rss_after_calls=host, gpu_allocated_after_calls=gpu or None,
           peak_host_bytes=max(r.memory["host_peak"] for r in replies),
           peak_gpu_bytes=max((r.memory["gpu_peak"] or 0) for r in replies) or None)
    host_bound = max(HOST_GROWTH_BOUND, HOST_GROWTH_FRACTION * host[0])
    growth, leaking = _growth(host, host_bound)
    if leaking:
        fail(f"host memory grew at every call, by {growth / MIB:.0f} MiB over {len(host)} calls "
             f"({', '.join(f'{h / MIB:.0f}' for h in host)} MiB; bound {host_bound / MIB:.0f} MiB): the wrapper "
             "probably keeps outputs, latents or a cache across calls")
    if len(gpu) >= 3:
        growth, leaking = _growth(gpu, GPU_GROWTH_BOUND)
        if leaking:
            fail(f"GPU memory allocated grew at every call, by {growth / MIB:.0f} MiB over {len(gpu)} calls: "
                 "the wrapper probably keeps tensors on the GPU across calls")
