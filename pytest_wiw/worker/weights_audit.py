"""After a load: compare every checkpoint tensor with the running tensor it was loaded into.

Libraries load damaged checkpoints quietly: transformers gives a parameter the checkpoint lacks a
random initialisation (with a log line nobody reads), ``copy_`` turns an integer tensor into float
weights, and NaN or Inf values load like any others. The worker audits the running model once,
right after the wrapper has loaded it, and the ``checkpoint loads`` check reports what it found,
per tensor and file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Formats whose files hold every weight of the components they touch (a LoRA holds only adapters).
FULL_WEIGHT_FORMATS = ("diffusers", "component", "component-folder", "safetensors")
#: Problems listed per kind before the rest is only counted (a checkpoint of another architecture
#: would otherwise list thousands).
LIST_AT_MOST = 50
#: Elements checked for NaN/Inf at a time.
CHUNK = 64 * 2**20


@dataclass
class WeightAudit:
    """What the audit found, as sentences naming the tensor (and its file) each."""

    unmapped: list[str] = field(default_factory=list)
    misshapen: list[str] = field(default_factory=list)
    wrong_dtype: list[str] = field(default_factory=list)
    nonfinite: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The findings for the ready message, each list cut at LIST_AT_MOST. ``unmapped`` is left out:
        the ready message carries it whole as ``unmapped_keys``."""
        return {kind: items[:LIST_AT_MOST] + ([f"... and {len(items) - LIST_AT_MOST} more"]
                                              if len(items) > LIST_AT_MOST else [])
                for kind, items in asdict(self).items() if kind != "unmapped"}


def audit_weights(model, ckpt, index) -> WeightAudit:
    """Audit ``model`` (a loaded WorldModel) against ``index`` (``ckpt.tensor_index()``).

    unmapped: checkpoint keys with no running tensor; misshapen: shapes differ; wrong_dtype: a float
    tensor stored as integers or the reverse; nonfinite: running values that are NaN or Inf;
    missing (full-weight formats only): parameters of a component the checkpoint loads into that no
    checkpoint tensor filled.
    """
    import torch

    audit = WeightAudit()
    reached: set[tuple] = set()
    for key, (file, _, info) in index.items():
        where = f"{key} ({ckpt.rel(file)})"
        tensor = model.running_tensor(key)
        if tensor is None:
            audit.unmapped.append(key)
            continue
        reached.add(_identity(tensor))
        if tuple(tensor.shape) != tuple(info.shape):
            audit.misshapen.append(f"{where}: shape {list(info.shape)} in the checkpoint, "
                                   f"{list(tensor.shape)} in the model")
            continue
        stored_float = info.dtype.startswith(("F", "BF"))
        if stored_float != tensor.is_floating_point():
            audit.wrong_dtype.append(f"{where}: stored as {info.dtype}, the model's tensor is "
                                     f"{str(tensor.dtype).replace('torch.', '')}")
        elif tensor.is_floating_point():
            bad = _nonfinite_count(tensor)
            if bad:
                audit.nonfinite.append(f"{where}: {bad} of {tensor.numel()} values are NaN or Inf")
    if ckpt.format in FULL_WEIGHT_FORMATS:
        audit.missing = _unfilled_parameters(model.components(), reached)
    return audit


def _nonfinite_count(tensor) -> int:
    """NaN and Inf values in ``tensor``, counted in slices so the mask never costs more than CHUNK bytes
    (a whole-tensor mask of UMT5-XXL's embedding would be 1 GB on the GPU, at load)."""
    import torch

    flat = tensor.detach().reshape(-1)
    with torch.no_grad():
        return sum(int((~torch.isfinite(flat[i:i + CHUNK])).sum()) for i in range(0, flat.numel(), CHUNK))


def _identity(tensor) -> tuple:
    """Which memory a tensor is: wrappers may hand back a detached view of a parameter (transformers'
    saved-name lookup does), so object identity would not do."""
    return tensor.data_ptr(), tuple(tensor.shape), tensor.dtype


def _unfilled_parameters(components: dict, reached: set[tuple]) -> list[str]:
    """Parameters of the components the checkpoint reached at least once that it did not fill."""
    missing = []
    for name, module in components.items():
        params = list(module.named_parameters())  # tied weights appear once
        if not any(_identity(p) in reached for _, p in params):
            continue  # a component this checkpoint does not load (an FT type's shared VAE, say)
        prefix = f"{name}/" if name else ""
        missing += [f"{prefix}{pname}" for pname, p in params if _identity(p) not in reached]
    return missing
