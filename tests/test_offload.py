"""--wm-offload (wrappers.common.offload) on real tiny checkpoints: outputs bitwise as without it, swaps in and out.

On the CPU the idle version of a component is in host memory anyway, so a swap moves no weights: these
tests prove the bookkeeping (which version runs, which tensors each module holds, what the swaps count)
and that FT and zero-shot outputs with offload equal those without it bit for bit, for every component-swap
FT kind. The GPU tests at the end (skipped without CUDA) prove the pinned path: the idle version really
leaves the device and waits in pinned host memory.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import dataclasses  # noqa: E402

import jsonschema  # noqa: E402
from conftest import make_checks_dir, run_checks  # noqa: E402
from wrapper_helpers import (  # noqa: E402
    load_wrapper,
    one_thread,  # noqa: F401  (autouse: one torch thread for this module)
    reference_request,
    save_diffsynth_full_fine_tune,
    tiny_swap_checkpoints,
)

from pytest_wiw.api import registry  # noqa: E402
from pytest_wiw.checkpoints import files as checkpoint
from pytest_wiw.report.writer import SCHEMA_PATH  # noqa: E402
from wrappers.common.component_swap import ComponentSwap  # noqa: E402
from wrappers.cosmos import Cosmos2VideoToWorld  # noqa: E402
from wrappers.igen import ActionConditionedSVD  # noqa: E402
from wrappers.ltx import LTXImageToVideo  # noqa: E402
from wrappers.common.offload import ModuleOffload, offload_mode  # noqa: E402
from wrappers.svd import StableVideoDiffusion  # noqa: E402
from wrappers.wan import TINY_GENERATION as WAN_GENERATION  # noqa: E402
from wrappers.wan import WanImageToVideo  # noqa: E402

FT, BASE = ComponentSwap.FINE_TUNED, ComponentSwap.BASE
#: FT kind -> (wrapper class, the swapped component)
KINDS = {"FTcosmos": (Cosmos2VideoToWorld, "transformer"), "FTltx": (LTXImageToVideo, "transformer"),
         "igen": (ActionConditionedSVD, "unet"), "FTwan21": (WanImageToVideo, "transformer")}


def _tiny_wan_full(root):
    """A DiffSynth full fine-tune of the tiny wan21 (one DiT state dict in original-Wan names) and its base."""
    base = WanImageToVideo.make_tiny("wan21", root / "wan21", seed=0)
    full = save_diffsynth_full_fine_tune(root, base, WAN_GENERATION)
    return {"base": base, "ft": full / "epoch-0.safetensors"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("offload")
    svd_base = StableVideoDiffusion.make_tiny("svd", root / "svd", seed=0)
    return {
        "FTcosmos": tiny_swap_checkpoints(Cosmos2VideoToWorld, root / "cosmos", "cosmos20", "FTcosmos"),
        "FTltx": tiny_swap_checkpoints(LTXImageToVideo, root / "ltx", "ltx", "FTltx"),
        "igen": {"base": svd_base, "ft": ActionConditionedSVD.make_tiny("igen", root / "igen", base=svd_base)},
        "FTwan21": _tiny_wan_full(root),
    }


def _load(kind, tiny, offload):
    cls, _ = KINDS[kind]
    return load_wrapper(cls, kind, tiny[kind]["ft"], tiny[kind]["base"], options={"offload": offload})


def _request(kind):
    actions = [[4, 1, 1, 2]] if kind == "igen" else None
    return reference_request(kind, seed=(11,), batch=1, actions=actions)


def _versions(model, component):
    """The base's and the fine-tune's module of ``component``."""
    swap = model._swap
    return getattr(swap.base_pipe, component), getattr(swap.ft_pipe, component)


def _holds_host_copies(offload: ModuleOffload, name: str) -> bool:
    """Every tensor of version ``name`` is its host copy (the idle state; on the CPU the resident one too)."""
    return all(t.data_ptr() == h.data_ptr() for t, h in offload._host[name])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_outputs_with_offload_equal_outputs_without_bitwise(kind, tiny):
    request = _request(kind)
    outputs = {}
    for mode in ("none", "pinned"):
        model = _load(kind, tiny, mode)
        ft = model.generate(request)
        with model.zero_shot():
            zero = model.generate(request)
        outputs[mode] = (ft, zero, model.generate(request))
    none, pinned = outputs["none"], outputs["pinned"]
    assert not np.array_equal(none[0], none[1]), "the tiny fine-tune must differ from its base for this to mean much"
    for label, a, b in zip(("FT", "zero-shot", "FT after zero-shot"), none, pinned):
        assert np.array_equal(a, b), f"{kind} {label}: output with --wm-offload pinned differs from none"
    assert np.array_equal(pinned[0], pinned[2])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_zero_shot_swaps_the_base_in_and_back_out(kind, tiny):
    _, component = KINDS[kind]
    model = _load(kind, tiny, "pinned")
    offload = model._swap.offload
    base_module, ft_module = _versions(model, component)
    assert offload is not None and offload.resident == FT
    assert offload.modules == {BASE: [base_module], FT: [ft_module]}
    assert model.components()[component] is ft_module
    assert _holds_host_copies(offload, BASE)
    with model.zero_shot():
        assert offload.resident == BASE
        assert model.components()[component] is base_module
        assert _holds_host_copies(offload, FT)
    assert offload.resident == FT and model.components()[component] is ft_module
    stats = model.stats()["offload"]
    assert stats["mode"] == "pinned" and stats["swaps"] == 2 and stats["swap_seconds"] >= 0
    assert stats["pinned"] is False and stats["host_bytes"] == 0  # the CPU: no copies, nothing pinned
    assert any("--wm-offload pinned: the device is the CPU" in n for n in model.notes), model.notes


def test_an_error_inside_zero_shot_swaps_the_fine_tune_back(tiny):
    model = _load("FTcosmos", tiny, "pinned")
    with pytest.raises(RuntimeError):
        with model.zero_shot():
            raise RuntimeError("boom")
    assert model._swap.offload.resident == FT and model.stats()["offload"]["swaps"] == 2


def test_offload_none_keeps_both_and_says_so(tiny):
    model = _load("FTcosmos", tiny, "none")
    assert model._swap.offload is None
    assert model.stats() == {"offload": {"mode": "none"}}
    with model.zero_shot():
        pass
    assert model.stats() == {"offload": {"mode": "none"}}


def test_zero_shot_types_report_nothing_to_offload(tiny):
    model = load_wrapper(Cosmos2VideoToWorld, "cosmos20", tiny["FTcosmos"]["base"])
    assert model.stats() == {}


def test_an_unknown_offload_mode_is_refused_naming_the_choices():
    assert offload_mode({}) == "pinned"
    with pytest.raises(ValueError, match="expected one of pinned, none"):
        offload_mode({"offload": "disk"})


# -- the pinned path, on a GPU ------------------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _linear(seed):
    torch.manual_seed(seed)
    return torch.nn.Linear(256, 256)


@cuda
def test_on_cuda_the_idle_version_waits_pinned_and_the_device_holds_one():
    base, ft = _linear(0), _linear(1).cuda()
    expected = {"base": [t.detach().clone() for t in base.state_dict().values()],
                "ft": [t.detach().cpu().clone() for t in ft.state_dict().values()]}
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    offload = ModuleOffload({BASE: base, FT: ft}, "cuda", resident=FT)
    size = sum(t.numel() * t.element_size() for t in ft.state_dict().values())
    assert offload.pinned
    assert all(p.device.type == "cuda" for p in ft.parameters())
    assert all(p.device.type == "cpu" and p.is_pinned() for p in base.parameters())
    assert torch.cuda.memory_allocated() <= before  # the base was never put on the device
    offload.activate(BASE)
    assert all(p.device.type == "cuda" for p in base.parameters())
    assert all(p.device.type == "cpu" and p.is_pinned() for p in ft.parameters())
    assert torch.cuda.memory_allocated() - before <= size  # one version on the device at a time
    for module, key in ((base, "base"), (ft, "ft")):
        assert all(torch.equal(a.cpu(), b) for a, b in zip(module.state_dict().values(), expected[key]))
    offload.activate(FT)
    assert offload.swaps == 2 and 2 * size <= offload.host_bytes() < 2 * size + 4 * 256  # one aligned buffer each
    assert len({p.untyped_storage().data_ptr() for p in base.parameters()}) == 1


@cuda
def test_on_cuda_ftcosmos_keeps_one_transformer_on_the_device(tiny):
    """The wrapper as the worker builds it on the GPU: the base's transformer leaves the device at load."""
    spec = registry.get_spec("FTcosmos")
    ft = checkpoint.open_checkpoint(tiny["FTcosmos"]["ft"])
    spec = dataclasses.replace(spec, defaults=spec.defaults.updated(checkpoint.card_generation(ft.card)))
    model = Cosmos2VideoToWorld(spec, ft, base_ckpt=checkpoint.open_checkpoint(tiny["FTcosmos"]["base"]),
                                device="cuda", dtype=torch.float32, options={"offload": "pinned"})
    base_module, ft_module = _versions(model, "transformer")
    assert all(p.is_cuda for p in ft_module.parameters())
    assert all(not p.is_cuda and p.is_pinned() for p in base_module.parameters())
    with model.zero_shot():
        assert all(p.is_cuda for p in base_module.parameters())
        assert all(not p.is_cuda and p.is_pinned() for p in ft_module.parameters())
    assert all(p.is_cuda for p in ft_module.parameters())
    stats = model.stats()["offload"]
    assert stats["pinned"] and stats["swaps"] == 2 and stats["host_bytes"] > 0


# -- the option, end to end: pytest --wm FTcosmos [--wm-offload none] --wm-report ----------------------------
@pytest.mark.parametrize("mode", ["pinned", "none"])
def test_the_report_carries_the_swaps_and_the_weight_audit_time(mode, tmp_path, run_env):
    workdir = make_checks_dir(tmp_path / "run")
    args = ["--wm", "FTcosmos", f"--wm-report={workdir / 'out'}", "--wm-max-examples", "0"]
    run = run_checks(workdir, run_env, *args, *(["--wm-offload", "none"] if mode == "none" else []))
    assert run.returncode == 0, run.output[-3000:]
    report = json.loads((workdir / "out" / "FTcosmos.json").read_text())
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    assert report["figures"]["weight_audit_seconds"] >= 0
    offload = report["wrapper_stats"]["offload"]
    assert offload["mode"] == mode
    md = (workdir / "out" / "report.md").read_text()
    if mode == "pinned":  # Z ran inside zero_shot(): the base swapped in, then the fine-tune back
        assert offload["swaps"] == 2 and report["figures"]["offload_swaps"] == 2
        assert "| FTcosmos |" in md and "| pinned | 2 in " in md
    else:
        assert "offload_swaps" not in report["figures"] and "| none | - |" in md


def test_an_unknown_offload_mode_is_a_usage_error(tmp_path, run_env):
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTcosmos", "--wm-offload", "disk")
    assert run.returncode == 4 and "invalid choice: 'disk'" in run.output, run.output[-2000:]
    run = run_checks(make_checks_dir(tmp_path / "run2"), run_env, "--wm", "FTcosmos", "--wm-opt", "offload=disk")
    assert run.returncode == 4 and "offload='disk': expected one of pinned, none" in run.output, run.output[-2000:]


def test_the_worker_answers_stats_with_the_swaps_and_the_audit_time(tiny_cache, monkeypatch):
    """The worker's ``stats`` reply carries the wrapper's figures and the weight audit's time."""
    from pytest_wiw.api.registry import get_spec
    from pytest_wiw.session.pool import PoolSettings, WorkerPool

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pool = WorkerPool(PoolSettings(device="cpu", tiny_cache=str(tiny_cache), load_timeout=600,
                                   options={"offload": "pinned"}))
    try:
        handle = pool.get(get_spec("FTcosmos"), get_spec("cosmos20"), None, None)
        assert handle.ready is not None, handle.failure
        assert handle.ready.weight_audit_seconds >= 0
        assert handle.ready.wrapper_stats["offload"]["swaps"] == 0
        request = _request("FTcosmos")
        request = type(request)(np.zeros((1, 3, 32, 32), np.uint8), request.actions, request.task_type, 0,
                                "FTcosmos")
        _, reply = handle.generate(request, "zero_shot")
        assert reply.wrapper_stats["offload"]["swaps"] == 2
        stats = handle.stats()
        assert stats.wrapper_stats["offload"] == {**stats.wrapper_stats["offload"], "mode": "pinned",
                                                     "resident": FT, "swaps": 2}
        assert stats.weight_audit_seconds == handle.ready.weight_audit_seconds
    finally:
        pool.close_all()
