"""Weight fingerprints: a small summary of a tensor, computed the same way from a file and a model.

The worker fingerprints the tensors as they sit in the running model; the suite fingerprints the
checkpoint's tensors from the files, cast to the running dtype first, and the two must agree. A
wrapper that silently keeps its base weights fails that comparison.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Elements sampled at fixed, evenly spaced flat positions.
SAMPLE_SIZE = 8
# Both sides sum the same values in float64; only the summation order differs (GPU against CPU),
# which moves a float64 sum by ~1e-12 relative. 1e-6 leaves room and is still far below the change
# of any fine-tune.
REL_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Fingerprint:
    shape: tuple[int, ...]
    dtype: str
    sum: float
    l2: float
    sample: tuple[float, ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"], d["sample"] = list(self.shape), list(self.sample)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Fingerprint":
        return cls(shape=tuple(d["shape"]), dtype=d["dtype"], sum=float(d["sum"]), l2=float(d["l2"]),
                   sample=tuple(float(x) for x in d["sample"]))


def fingerprint_tensor(tensor) -> Fingerprint:
    """Fingerprint a torch tensor as it is (its dtype and values), summed in float64."""
    import torch

    with torch.no_grad():
        flat = tensor.detach().reshape(-1).to(torch.float64)
        n = flat.numel()
        idx = [round(i * (n - 1) / (SAMPLE_SIZE - 1)) for i in range(SAMPLE_SIZE)] if n else []
        sample = tuple(float(v) for v in flat[idx].cpu()) if n else ()
        return Fingerprint(shape=tuple(tensor.shape), dtype=str(tensor.dtype).replace("torch.", ""),
                           sum=float(flat.sum().cpu()), l2=float(flat.norm().cpu()), sample=sample)


def compare(key: str, running: Fingerprint, expected: Fingerprint) -> str | None:
    """None when the fingerprints agree, else a sentence saying how they differ."""
    if tuple(running.shape) != tuple(expected.shape):
        return f"{key}: shape {list(running.shape)} in the model, {list(expected.shape)} in the checkpoint"
    scale = max(expected.l2, 1e-30)
    n = max(math.prod(expected.shape), 1)
    if abs(running.l2 - expected.l2) > REL_TOLERANCE * scale:
        return f"{key}: L2 norm {running.l2:.6g} in the model, {expected.l2:.6g} in the checkpoint"
    if abs(running.sum - expected.sum) > REL_TOLERANCE * scale * math.sqrt(n):
        return f"{key}: sum {running.sum:.6g} in the model, {expected.sum:.6g} in the checkpoint"
    for i, (a, b) in enumerate(zip(running.sample, expected.sample)):
        if abs(a - b) > REL_TOLERANCE * max(abs(b), scale / math.sqrt(n)):
            return f"{key}: sampled element {i} is {a:.6g} in the model, {b:.6g} in the checkpoint"
    return None


def file_fingerprints(ckpt, keys, dtypes: dict[str, str]) -> dict[str, Fingerprint]:
    """Fingerprints of ``keys`` read from the checkpoint files, each cast to the running dtype."""
    import torch
    from safetensors import safe_open

    index = ckpt.tensor_index()
    by_file: dict = {}
    for key in keys:
        file, name, _ = index[key]
        by_file.setdefault(file, []).append((key, name))
    out = {}
    for file, entries in by_file.items():
        with safe_open(str(file), framework="pt") as fh:
            for key, name in entries:
                tensor = fh.get_tensor(name)
                dtype = dtypes.get(key)
                if dtype:
                    tensor = tensor.to(getattr(torch, dtype))
                out[key] = fingerprint_tensor(tensor)
    return out
