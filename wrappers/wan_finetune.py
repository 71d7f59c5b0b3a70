"""Full fine-tunes of Wan transformers, swapped in over the base pipeline (``wrappers.common.component_swap``).

Two layouts WIW users have:

* DiffSynth-Studio's ``--ft_method=full``: one ``.safetensors`` state dict of the DiT in original-Wan
  names (``.../Wan2.2-TI2V-5B_full_navigation/epoch-0.safetensors``), which WIW loads with
  ``pipe.dit.load_state_dict`` (strict). Its keys are mapped to diffusers' names
  (``wrappers.wan_native``); every key that does not map, and every transformer parameter it leaves
  unfilled, is a CheckpointError naming them, as a strict load would be.
* diffusers' own: ``transformer/`` (+ ``transformer_2/`` for A14B's low-noise expert) folders with
  ``config.json``, as WIW's ``wan22_i2v_model.py --ft_dir`` reads them.

Either way the fine-tuned transformers join a second pipeline that shares every other module with
the base one; ``zero_shot()`` runs the base pipeline (no reload, bitwise base output). They load on the
CPU; with ``--wm-offload pinned`` (the default) only one version of the transformers is on the device at a
time (wrappers.common.offload).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pytest_wiw.api import CheckpointError, lookup_tensor

from .common.component_swap import ComponentSwap, FineTunedComponent, check_fits_base, pair_pipelines
from .common.loading import load_pretrained, model_config, read_safetensors
from .wan_lora import listing, normalize_key
from .wan_native import to_diffusers

#: Transformer config fields a fine-tuned expert must share with the base's.
ARCH_FIELDS = ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
               "text_dim", "ffn_dim", "num_layers", "image_dim", "added_kv_proj_dim")


@dataclass
class FullFineTune:
    """Fine-tuned transformers by component, and how checkpoint keys find their running tensors."""

    swap: ComponentSwap
    modules: dict[str, torch.nn.Module]
    #: checkpoint key -> (component, diffusers parameter name), for DiffSynth state dicts
    key_map: dict[str, tuple[str, str]] = field(default_factory=dict)

    def running_tensor(self, key: str):
        """The fine-tuned tensor a checkpoint key was loaded into (``transformer/...`` keys or mapped ones)."""
        if key in self.key_map:
            component, name = self.key_map[key]
            return lookup_tensor(self.modules[component], name)
        component, _, name = key.partition("/")
        module = self.modules.get(component)
        return lookup_tensor(module, name) if module is not None and name else None


def load_native_state_dicts(base_pipe, routes: list[tuple[str, Path, str]], *, what: str,
                            dtype: torch.dtype, device: str, offload: str) -> FullFineTune:
    """DiffSynth full fine-tunes: ``routes`` are (component, file, key prefix in the checkpoint) triples."""
    modules, key_map = {}, {}
    for component, file, key_prefix in routes:
        module, names = _load_native(getattr(base_pipe, component), file, what=f"{what} {component}", dtype=dtype)
        modules[component] = module.eval()
        key_map.update({key_prefix + k: (component, n) for k, n in names.items()})
    return FullFineTune(_swap_in(base_pipe, modules, device, offload), modules, key_map)


def load_diffusers_folders(base_pipe, folders: dict[str, Path], *, what: str, base_path: Path,
                           dtype: torch.dtype, device: str, offload: str) -> FullFineTune:
    """diffusers full fine-tunes: {component: its folder (config.json + weights)}."""
    modules = {}
    for component, folder in folders.items():
        model_cls = type(getattr(base_pipe, component))
        # Only check_fits_base's fields: the base pipeline is loaded already. The architecture first: weights
        # of another one would load as missing tensors.
        spec = FineTunedComponent(name=component, label=f"fine-tuned {component}", arch_fields=ARCH_FIELDS,
                                  load_base=None)
        check_fits_base(spec, model_config(model_cls, folder), base_pipe, folder=folder, base_path=base_path)
        module = load_pretrained(model_cls, folder, dtype=dtype, what=f"fine-tuned {what} {component}")
        modules[component] = module.eval()
    return FullFineTune(_swap_in(base_pipe, modules, device, offload), modules)


def _swap_in(base_pipe, modules: dict, device: str, offload: str) -> ComponentSwap:
    """The base pipeline paired with one that runs ``modules`` instead (all else shared)."""
    ft_pipe = type(base_pipe)(**{**base_pipe.components, **modules})
    return pair_pipelines(base_pipe, ft_pipe, list(modules), device=device, offload=offload)


def _load_native(base_module, file: Path, *, what: str, dtype: torch.dtype):
    """A copy of ``base_module`` holding the state dict in ``file`` (original-Wan names), and key -> name."""
    tensors, _ = read_safetensors(file)
    params = base_module.state_dict()
    names, bad = {}, {}
    for key, tensor in tensors.items():
        name = to_diffusers(normalize_key(key))
        if name is None:
            bad[key] = "no Wan DiT module of that name (diffusers' Wan key conversion has no rule for it)"
        elif name not in params:
            bad[key] = f"maps to {name}, which the {what} does not have"
        elif tuple(params[name].shape) != tuple(tensor.shape):
            bad[key] = f"shape {list(tensor.shape)}, the {what}'s {name} is {list(params[name].shape)}"
        else:
            names[key] = name
    if bad:
        raise CheckpointError(f"{file}: {len(bad)} of {len(tensors)} tensors of this full fine-tune (a DiT state "
                              f"dict in DiffSynth / original Wan names) do not map to the {what}:"
                              + listing([f"{k}: {why}" for k, why in sorted(bad.items())]))
    filled = set(names.values())
    unfilled = [n for n in params if n not in filled]
    if unfilled:
        raise CheckpointError(f"{file}: a full fine-tune must fill every parameter of the {what} (WIW loads it "
                              f"with a strict load_state_dict); {len(unfilled)} are missing:" + listing(unfilled))
    module = _host_copy_of(base_module).to(dtype=dtype)
    module.load_state_dict({names[k]: t for k, t in tensors.items()}, strict=True)
    return module, names


def _host_copy_of(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``module`` built in host memory, whatever device it is on (a copy on the device would
    hold two transformers there at once): its parameters uninitialised (the strict load that follows fills
    every one), its buffers copied (non-persistent ones, rotary tables, are in no state dict)."""
    memo = {}
    for p in module.parameters():
        memo[id(p)] = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device="cpu"),
                                         requires_grad=p.requires_grad)
    for b in module.buffers():
        memo[id(b)] = b.detach().to("cpu", copy=True)
    return copy.deepcopy(module, memo)

