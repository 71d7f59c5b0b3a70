"""Deliberately defective world models: each breaks one rule a conformance check exists to catch.

They are real tiny models (the svd and Wan wrappers) with one defect each, imported by worker
processes from this folder (the tests put it on PYTHONPATH) and registered by the pytester
conftest that ``DEFECTIVE_CONFTEST`` writes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pytest_wiw.api import GenerationRequest, WorldModel
from wrappers.svd import StableVideoDiffusion
from wrappers.wan import ADAPTER_NAME, WanImageToVideo


class UnseededSVD(StableVideoDiffusion):
    """Draws noise from generators seeded by the OS, not by the request (WIW's svd, ltx, cosmos20...)."""

    def generators(self, request):
        return [torch.Generator("cpu").manual_seed(torch.seed()) for _ in request.seeds]


class KeptGeneratorSVD(StableVideoDiffusion):
    """Builds one generator at load and advances it with every request (WIW's wan22 and igen)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._generator = torch.Generator("cpu").manual_seed(0)

    def generators(self, request):
        return [self._generator for _ in request.seeds]


class SharedBatchGeneratorSVD(StableVideoDiffusion):
    """Seeds one generator from the first item's seed and shares it across the batch."""

    def generators(self, request):
        shared = torch.Generator("cpu").manual_seed(request.seeds[0])
        return [shared for _ in request.seeds]


class FixedSeedSVD(StableVideoDiffusion):
    """Ignores the request's seed: every call uses seed 0."""

    def generators(self, request):
        return [torch.Generator("cpu").manual_seed(0) for _ in request.seeds]


class FloatOutputSVD(StableVideoDiffusion):
    """Returns float frames in [0, 1] instead of uint8."""

    def generate(self, request: GenerationRequest) -> np.ndarray:
        return super().generate(request).astype(np.float32) / 255.0


class ShortOutputSVD(StableVideoDiffusion):
    """Returns one frame fewer than num_output_frames."""

    def generate(self, request: GenerationRequest) -> np.ndarray:
        return super().generate(request)[:, :-1]


class IgnoresCheckpointSVD(StableVideoDiffusion):
    """Loads the checkpoint, then re-initialises the UNet: the weights that run are not the checkpoint's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            for param in self.pipe.unet.parameters():
                param.normal_(0.0, 0.02)


class AnyNameSVD(StableVideoDiffusion):
    """Accepts a request meant for another model (skips the request_model_name comparison)."""

    def validate_request(self, request):
        if request.request_model_name != self.spec.name:
            return
        super().validate_request(request)


class LeakySVD(StableVideoDiffusion):
    """Keeps every output, and 96 MiB of scratch per call with it, for ever (a cache that never empties)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kept = []

    def generate(self, request):
        video = super().generate(request)
        self.kept.append((video, np.ones(96 * 2**20, dtype=np.uint8)))
        return video


class InputSizeOutputSVD(StableVideoDiffusion):
    """Generates at the start image's own size and returns that, ignoring the declared sizes: right for
    the reference request (model-size images), wrong for any other valid image size."""

    def generate(self, request):
        import dataclasses

        height, width = request.images.shape[2:]
        declared = self.generation
        self.generation = dataclasses.replace(declared, height=height, width=width, out_height=height,
                                              out_width=width)
        try:
            return super().generate(request)
        finally:
            self.generation = declared


class TorchOutputSVD(StableVideoDiffusion):
    """Returns the pipeline's frames as a torch tensor instead of a numpy uint8 array."""

    def generate(self, request):
        return torch.from_numpy(super().generate(request))


class NoSuperInitSVD(StableVideoDiffusion):
    """Its __init__ sets up the pipeline itself and never calls WorldModel.__init__ (super().__init__)."""

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):  # noqa: no super().__init__
        from wrappers.svd import load_pipeline

        self.pipe = load_pipeline(ckpt, dtype, device)
        self.notes.append("loaded")  # AttributeError: WorldModel.__init__ never set notes


class NoComponentsSVD(StableVideoDiffusion):
    """Runs fine but exposes no modules: neither components() nor running_tensor() is overridden, so the
    suite cannot see where the checkpoint's tensors went."""

    components = WorldModel.components
    running_tensor = WorldModel.running_tensor


class IgnoresLimitsSVD(StableVideoDiffusion):
    """Skips the spec's request limits: a start image of any size goes on to be resized and generated."""

    def validate_request(self, request):
        import pytest_wiw.api.worldmodel as worldmodel

        enforce = worldmodel.check_request_limits
        worldmodel.check_request_limits = lambda request, spec: None  # the base checks, limits left out
        try:
            super().validate_request(request)
        finally:
            worldmodel.check_request_limits = enforce


class TinyParentSVD(StableVideoDiffusion):
    """Its make_tiny writes the tiny checkpoint into out_dir, then returns the folder above it."""

    @classmethod
    def make_tiny(cls, wm_type, out_dir, *, base=None, seed=0):
        return Path(super().make_tiny(wm_type, out_dir, base=base, seed=seed)).parent


class ZeroShotNotAContextManagerWan(WanImageToVideo):
    """Its zero_shot() is a generator function without @contextlib.contextmanager: calling it returns a
    generator, which `with` cannot enter."""

    def zero_shot(self):  # the decorator forgotten
        with self._adapter_off():
            yield


class CrashOnLoadSVD(StableVideoDiffusion):
    """Dies while loading, as a wrapper with a missing dependency would."""

    def __init__(self, *args, **kwargs):
        print("CrashOnLoadSVD: about to raise", file=sys.stderr, flush=True)
        raise RuntimeError("CUDA error: out of memory (simulated by the defective test wrapper)")


class ExitOnLoadSVD(StableVideoDiffusion):
    """Exits while loading without a word on the protocol, as a library that calls exit() does."""

    def __init__(self, *args, **kwargs):
        print("ExitOnLoadSVD: about to exit with status 3", file=sys.stderr, flush=True)
        os._exit(3)


class SegfaultOnLoadSVD(StableVideoDiffusion):
    """Segfaults while loading, as a broken native extension does."""

    def __init__(self, *args, **kwargs):
        print("SegfaultOnLoadSVD: about to segfault", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(10)


class IgnoresLoraWan(WanImageToVideo):
    """Loads the LoRA file but zeroes its lora_B in memory: the checkpoint is read, never applied."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with torch.no_grad():
            for name, param in self.pipe.transformer.named_parameters():
                if f"lora_B.{ADAPTER_NAME}" in name:
                    param.zero_()


class KeptGeneratorWan(WanImageToVideo):
    """An FT wrapper that builds one generator at load and advances it with every request (WIW's wan22)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._generator = torch.Generator("cpu").manual_seed(0)

    def generators(self, request):
        return [self._generator for _ in request.seeds]


class LeakyZeroShotWan(WanImageToVideo):
    """zero_shot() only halves the adapter instead of switching it off: a dishonest baseline."""

    @contextlib.contextmanager
    def _adapter_off(self):
        self.pipe.set_adapters([ADAPTER_NAME], [0.5])
        try:
            yield
        finally:
            self.pipe.set_adapters([ADAPTER_NAME], [1.0])


class SlowSVD(StableVideoDiffusion):
    """Hangs in generate (a deadlock, a stuck collective): the request timeout must fire."""

    def generate(self, request):
        print("SlowSVD: generating forever", file=sys.stderr, flush=True)
        time.sleep(3600)


class HangOnLoadSVD(StableVideoDiffusion):
    """Hangs while loading: the load timeout must fire."""

    def __init__(self, *args, **kwargs):
        print("HangOnLoadSVD: loading forever", file=sys.stderr, flush=True)
        time.sleep(3600)


class DiesMidRequestSVD(StableVideoDiffusion):
    """Exits abruptly in the middle of a request, as a worker killed by a CUDA fault does."""

    def generate(self, request):
        print("DiesMidRequestSVD: about to exit with status 7", file=sys.stderr, flush=True)
        os._exit(7)


class DiesOnceOnABatchSVD(StableVideoDiffusion):
    """Dies the first time it is sent a batch of two (a CUDA fault on one request), and serves normally once
    started again: a marker file in the working directory remembers the death across processes."""

    MARKER = "dies-once-on-a-batch.marker"

    def generate(self, request):
        if request.batch_size == 2 and not os.path.exists(self.MARKER):
            open(self.MARKER, "w").close()
            print("DiesOnceOnABatchSVD: dying on a batch of two", file=sys.stderr, flush=True)
            os._exit(7)
        return super().generate(request)


class SegfaultSVD(StableVideoDiffusion):
    """Segfaults in the middle of a request."""

    def generate(self, request):
        print("SegfaultSVD: about to segfault", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(10)


class ExitsZeroMidRequestSVD(StableVideoDiffusion):
    """Exits with status 0 in the middle of a request, without replying (a stray sys.exit())."""

    def generate(self, request):
        print("ExitsZeroMidRequestSVD: about to exit with status 0", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(0)


class ListOutputSVD(StableVideoDiffusion):
    """Returns the video as nested Python lists instead of an array."""

    def generate(self, request):
        return super().generate(request).tolist()


class NoneOutputSVD(StableVideoDiffusion):
    """Returns nothing (a generate() that saves the video and forgets to return it)."""

    def generate(self, request):
        super().generate(request)


class PathOutputSVD(StableVideoDiffusion):
    """Returns the path of a saved video instead of the frames (as WIW's workers write to save_dirs)."""

    def generate(self, request):
        super().generate(request)
        return "/tmp/video.mp4"


class ThreeDimOutputSVD(StableVideoDiffusion):
    """Returns a 3-D array, the first item's first channel (T, H, W), instead of (B, T, 3, H, W)."""

    def generate(self, request):
        return super().generate(request)[0, :, 0]


# What the flooding wrappers write: FLOOD_BYTES in lines of FLOOD_LINE_BYTES to stderr, a line of
# LONG_LINE_BYTES without a break, and the same marker lines through print() and fd 1, which the
# worker must route to its log and keep off the protocol stream.
FLOOD_BYTES = 32 * 2**20
FLOOD_LINE_BYTES = 1024
LONG_LINE_BYTES = 2**20
STDOUT_MARKER = "FloodSVD: printed to stdout"


class FloodSVD(StableVideoDiffusion):
    """Writes 32 MiB to stderr, and prints to stdout, during generate, then returns normally."""

    def generate(self, request):
        flood()
        return super().generate(request)


class FloodThenDieSVD(StableVideoDiffusion):
    """Writes 32 MiB to stderr during generate, then exits with status 9."""

    def generate(self, request):
        flood()
        print("FloodThenDieSVD: about to exit with status 9", file=sys.stderr, flush=True)
        os._exit(9)


def flood() -> None:
    """Write FLOOD_BYTES of lines and one line of LONG_LINE_BYTES to stderr, and marker lines to stdout."""
    line = "x" * (FLOOD_LINE_BYTES - 1) + "\n"
    for _ in range(FLOOD_BYTES // FLOOD_LINE_BYTES):
        sys.stderr.write(line)
    print(STDOUT_MARKER, flush=True)
    os.write(1, f"{STDOUT_MARKER} (fd 1)\n".encode())
    sys.stderr.write("y" * LONG_LINE_BYTES + "\n")
    sys.stderr.flush()


class ForkingSVD(StableVideoDiffusion):
    """Starts a helper process at load (as dataloaders and compilers do); teardown must end it too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        print(f"ForkingSVD: child pid {self.child.pid}", file=sys.stderr, flush=True)


class ForkingSlowSVD(ForkingSVD, SlowSVD):
    """Starts a helper process at load, then hangs in generate: an interrupted run must end both."""


# The conftest a pytester run uses to register them (each is a defective copy of svd or FTwan21).
DEFECTIVE_CONFTEST = '''
from pathlib import Path

from pytest_wiw.api.registry import get_spec, register_wm

UNPINNED = Path(__file__).parent / "unpinned-env.txt"
UNPINNED.write_text("torch>=2.0\\ndiffusers\\n")


def _copy(name, of, wrapper, env=None, expected_failures=None, module="defective_wms"):
    spec = get_spec(of)
    register_wm(name, wrapper=f"{module}:{wrapper}", category=spec.category, base=spec.base,
                finetune=spec.finetune, tasks=spec.tasks, defaults=spec.defaults,
                env=env or str(spec.env_path()), expected_failures=expected_failures)


_copy("svd-unseeded", "svd", "UnseededSVD")
_copy("svd-kept-generator", "svd", "KeptGeneratorSVD")
_copy("svd-shared-batch-generator", "svd", "SharedBatchGeneratorSVD")
_copy("svd-fixed-seed", "svd", "FixedSeedSVD")
_copy("svd-float-output", "svd", "FloatOutputSVD")
_copy("svd-short-output", "svd", "ShortOutputSVD")
_copy("svd-ignores-checkpoint", "svd", "IgnoresCheckpointSVD")
_copy("svd-any-name", "svd", "AnyNameSVD")
_copy("svd-ignores-limits", "svd", "IgnoresLimitsSVD")
_copy("svd-no-super-init", "svd", "NoSuperInitSVD")
_copy("svd-torch-output", "svd", "TorchOutputSVD")
_copy("svd-no-components", "svd", "NoComponentsSVD")
_copy("svd-dies-once", "svd", "DiesOnceOnABatchSVD")
_copy("svd-hangs-at-load", "svd", "HangOnLoadSVD")
_copy("svd-exit-on-load", "svd", "ExitOnLoadSVD")
_copy("svd-segfault-on-load", "svd", "SegfaultOnLoadSVD")
_copy("svd-dies-mid-request", "svd", "DiesMidRequestSVD")
_copy("svd-segfault", "svd", "SegfaultSVD")
_copy("svd-exits-zero", "svd", "ExitsZeroMidRequestSVD")
_copy("svd-flood-then-die", "svd", "FloodThenDieSVD")
_copy("svd-list-output", "svd", "ListOutputSVD")
_copy("svd-none-output", "svd", "NoneOutputSVD")
_copy("svd-path-output", "svd", "PathOutputSVD")
_copy("svd-3d-output", "svd", "ThreeDimOutputSVD")
_copy("svd-crash-on-load", "svd", "CrashOnLoadSVD")
_copy("svd-leaky", "svd", "LeakySVD")
_copy("svd-input-size-output", "svd", "InputSizeOutputSVD")
_copy("svd-hangs", "svd", "SlowSVD")
# A second hanging type, with a helper process: a zero-shot copy is its own family, so `-n 2` runs it
# on the other xdist worker.
_copy("svd-forks-and-hangs", "svd", "ForkingSlowSVD")
_copy("svd-unpinned-env", "svd", "StableVideoDiffusion", env=str(UNPINNED))
_copy("svd-make-tiny-returns-parent", "svd", "TinyParentSVD")
_copy("FTwan21-zero-shot-not-a-context-manager", "FTwan21", "ZeroShotNotAContextManagerWan")
# A wrapper string whose module does not exist (a module renamed, or a package not installed).
_copy("svd-wrapper-not-found", "svd", "StableVideoDiffusion", module="defective_wms_renamed")
# A second svd name, for the seeded variant of the WIW-style worker script (tests/wiw_workers/wiw_svd_worker.py)
_copy("svd-wiw-seeded", "svd", "StableVideoDiffusion")
_copy("FTwan21-ignores-lora", "FTwan21", "IgnoresLoraWan")
_copy("FTwan21-leaky-zero-shot", "FTwan21", "LeakyZeroShotWan")
_copy("FTwan21-kept-generator", "FTwan21", "KeptGeneratorWan")
# Declared known failures: strict xfail. The first declares true failures, the second a false one.
_copy("svd-unseeded-declared", "svd", "UnseededSVD", expected_failures={
    "seed determinism": "upstream draws noise without a seed", "order independence": "same cause"})
_copy("svd-wrongly-declared", "svd", "StableVideoDiffusion", expected_failures={
    "seed determinism": "declared by mistake: svd is deterministic"})
'''
