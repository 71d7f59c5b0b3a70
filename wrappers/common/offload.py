"""Keep one of two interchangeable modules on the device and the other in host memory (``--wm-offload``).

An FT type that swaps one component into its base pipeline (FTcosmos, FTltx, igen) holds two versions
of that component: the base's and the fine-tuned one. Resident together they cost one extra transformer
of GPU memory (+3.7 GiB for Cosmos-Predict2 2B, about +28 GB at 14B), for a zero-shot call or two per
session. With ``--wm-offload pinned`` (the default) only the component that runs is on the device; the
other waits in pinned host memory and is copied in when it is needed (a pinned host-to-device copy runs
at tens of GiB/s, so a 2B transformer swaps in well under a second).

How: each module's parameters and buffers get a host copy, made once (pinned when the device is CUDA).
The weights never change during inference, so the copy stays exact: swapping a module out points its
tensors at their host copies (the device memory is freed), swapping it in copies them to the device with
``non_blocking=True``. The modules themselves (classes, configs, hooks) are never exchanged, so what
runs is what ran without offload, bit for bit. The module that runs is swapped out first, then the other
in: the device holds one version of the component at a time (the caching allocator reuses the freed
blocks).

On a CPU device host memory is the device: the host copy is the module's own tensors (no copy, no
pinning) and a swap only moves the bookkeeping. ``--wm-offload none`` keeps both versions on the device,
as before this option existed.
"""

from __future__ import annotations

import time
from typing import Iterator

import torch

from pytest_wiw.api import OFFLOAD_MODES, OFFLOAD_OPTION

#: ``pinned`` (the default): the idle component waits in host memory, pinned on CUDA; ``none``: both stay on
#: the device (as before the option existed, for cards with room to spare).
PINNED, NONE = OFFLOAD_MODES


#: Byte alignment of each tensor's copy in a version's host buffer (any dtype's element size divides it; 256
#: is what CUDA allocations align to, so copies start where the device's do).
HOST_ALIGN = 256


def offload_mode(options) -> str:
    """The offload mode the options ask for (default pinned); ValueError for an unknown one."""
    mode = str(options.get(OFFLOAD_OPTION, PINNED))
    if mode not in OFFLOAD_MODES:
        raise ValueError(f"--wm-offload / --wm-opt {OFFLOAD_OPTION}={mode!r}: expected one of "
                         f"{', '.join(OFFLOAD_MODES)}")
    return mode


def _tensors(module: torch.nn.Module) -> Iterator[torch.Tensor]:
    """Every parameter and buffer of ``module`` (non-persistent buffers too), each once."""
    seen = set()
    for tensor in list(module.parameters()) + list(module.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            yield tensor


class ModuleOffload:
    """Versions of a component by name (each one module, or several: Wan 2.2 A14B's two experts), of which
    one is resident on ``device`` and the others in host memory.

    ``resident`` names the version on the device now; ``activate(name)`` swaps. ``swaps`` and
    ``swap_seconds`` count what the swaps cost (the first placement at load is not counted).
    """

    def __init__(self, modules: dict[str, torch.nn.Module | list[torch.nn.Module]], device: str, resident: str):
        if resident not in modules:
            raise ValueError(f"resident {resident!r} is not one of {sorted(modules)}")
        #: version name -> its modules
        self.modules = {name: list(m) if isinstance(m, (list, tuple)) else [m] for name, m in modules.items()}
        self.device = torch.device(device)
        #: The host copies are pinned (a CUDA device); on a CPU device they are the running tensors themselves.
        self.pinned = self.device.type == "cuda"
        self.swaps = 0
        self.swap_seconds = 0.0
        #: module name -> [(tensor, its host copy)]: the host copies, made once.
        self._host: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        with _outside_inference_mode():
            for name, group in self.modules.items():
                tensors = [t for module in group for t in _tensors(module)]
                self._host[name] = list(zip(tensors, self._host_copies(tensors)))
            for name in self.modules:
                if name != resident:
                    self._swap_out(name)
            self._swap_in(resident)
        self.resident = resident
        self._synchronize()

    def _host_copies(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Host copies of ``tensors``: views into one buffer per version (pinned on CUDA). One buffer, not one
        per tensor: torch's pinned-memory allocator rounds each allocation up to a power of two."""
        if self.device.type == "cpu":  # host memory is where it runs: the tensors themselves, no copy
            return [t.data for t in tensors]
        sizes = [t.numel() * t.element_size() for t in tensors]
        offsets, total = [], 0
        for size in sizes:
            offsets.append(total)
            total += -(-size // HOST_ALIGN) * HOST_ALIGN
        flat = torch.empty(total, dtype=torch.uint8, device="cpu", pin_memory=self.pinned)
        copies = []
        for tensor, offset, size in zip(tensors, offsets, sizes):
            host = flat[offset:offset + size].view(tensor.dtype).view(tensor.shape)
            host.copy_(tensor.data)
            copies.append(host)
        return copies

    def _swap_out(self, name: str) -> None:
        for tensor, host in self._host[name]:
            tensor.data = host

    def _swap_in(self, name: str) -> None:
        for tensor, host in self._host[name]:
            tensor.data = host.to(self.device, non_blocking=True)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def activate(self, name: str) -> None:
        """Make ``name`` the module on the device (the one there now goes to host memory first)."""
        if name == self.resident:
            return
        t0 = time.perf_counter()
        with _outside_inference_mode():
            self._swap_out(self.resident)
            self._swap_in(name)
        self._synchronize()  # the copy is done before anything times or frees around it
        self.resident = name
        self.swaps += 1
        self.swap_seconds += time.perf_counter() - t0

    def host_bytes(self) -> int:
        """Bytes of the host copies (pinned on CUDA); 0 on a CPU device, where they are the running tensors."""
        if self.device.type == "cpu":
            return 0
        return sum(pairs[0][1].untyped_storage().nbytes() for pairs in self._host.values() if pairs)

    def stats(self) -> dict:
        return {"mode": PINNED, "resident": self.resident, "swaps": self.swaps,
                "swap_seconds": round(self.swap_seconds, 4), "pinned": self.pinned,
                "host_bytes": self.host_bytes()}


class _outside_inference_mode:
    """Swaps assign ``.data`` of parameters: outside inference mode (the worker may be inside it) and
    without autograd."""

    def __enter__(self):
        self._inference = torch.inference_mode(False)
        self._grad = torch.no_grad()
        self._inference.__enter__()
        self._grad.__enter__()

    def __exit__(self, *exc):
        self._grad.__exit__(*exc)
        self._inference.__exit__(*exc)
        return False
