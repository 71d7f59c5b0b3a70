"""LoRA post-trains for the Wan 2.2 wrappers: read, check, load, map back, switch off.

WIW's FTwan* LoRAs are trained with DiffSynth-Studio, whose keys use the original Wan module names
under peft's adapter segment (``blocks.0.self_attn.q.lora_A.default.weight``, sometimes under a
``diffusion_model.`` or ``model.`` prefix); diffusers' ``save_lora_weights`` writes
``transformer.blocks.0.attn1.to_q.lora_A.weight``. Both load here, through diffusers' own pieces:

* names: original-Wan names go through diffusers' ``_convert_non_diffusers_wan_lora_to_diffusers``
  (what ``WanLoraLoaderMixin.lora_state_dict`` applies to ``diffusion_model.`` keys), one module at a
  time, so a key it cannot place is named rather than failing the whole file;
* loading: ``WanTransformer3DModel.load_lora_adapter`` (what ``load_lora_into_transformer`` calls),
  with the file's diffusers adapter metadata when it has some, so the adapter scale is the file's.

The converter would fold a ``.alpha`` tensor into the A and B weights (``alpha / rank``), leaving the
running tensors unequal to the file's. Alphas are therefore taken out before conversion and passed
as peft ``network_alphas`` instead: the running lora_A/lora_B equal the file tensors bitwise, the
scale is the same, and an ``.alpha`` key maps to the layer's running ``lora_alpha``.

Every key is checked against the transformer before loading (module exists, is a Linear, shapes
fit): diffusers and peft would otherwise drop unknown keys with a warning and run the base weights.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from pytest_wiw.api import CheckpointError, lookup_tensor

from .common.loading import LOAD_ERRORS, load_pretrained, read_safetensors
from .common.tiny import save_tiny

#: DiffSynth-Studio's default Wan LoRA targets (q, k, v, o, ffn.0, ffn.2) under their diffusers names.
LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]
#: Prefixes trainers put in front of the transformer's own module names (stripped, repeatedly).
FOREIGN_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "pipe.dit.", "dit.",
                    "model.")
#: Original-Wan (and DiffSynth-Studio) module names, as opposed to diffusers' (attn1, attn2, ffn.net ...).
_WAN_NATIVE = re.compile(r"^(blocks\.\d+\.(self_attn|cross_attn|ffn\.\d+)\.|text_embedding\.|time_embedding\.|"
                         r"time_projection\.|head\.head\.|head\.head$|img_emb\.)")
#: peft's adapter segment inside a key: ``lora_A.default.weight`` -> ``lora_A.weight``.
_ADAPTER_SEGMENT = re.compile(r"\.(lora_A|lora_B|lora_down|lora_up)\.[^.]+\.(weight|bias)$")
_LORA_PART = re.compile(r"\.(lora_A|lora_B|lora_down|lora_up)\.")
_SUFFIXES = (".alpha", ".diff_b", ".diff")
LIST_AT_MOST = 8


@dataclass
class LoadedLora:
    """One LoRA file loaded into one transformer as a peft adapter, and how its keys map back."""

    file: Path
    component: str                 # "transformer" or "transformer_2"
    adapter: str
    naming: str                    # "diffusers" or "wan" (original Wan / DiffSynth-Studio names)
    #: file key -> running parameter name inside the transformer, adapter segment not yet inserted
    params: dict[str, str] = field(default_factory=dict)
    #: file key of an ``.alpha`` tensor -> (diffusers module path, the file tensor's shape)
    alphas: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)

    def running_tensor(self, transformer, file_key: str):
        """The running tensor that ``file_key`` of this file was loaded into, or None."""
        if file_key in self.alphas:
            path, shape = self.alphas[file_key]
            try:
                layer = transformer.get_submodule(path)
                alpha = layer.lora_alpha[self.adapter]
            except (AttributeError, KeyError):
                return None
            return torch.tensor(float(alpha), dtype=torch.float32).reshape(shape)
        name = self.params.get(file_key)
        if name is None:
            return None
        head, kind, leaf = name.rsplit(".", 2)
        return lookup_tensor(transformer, f"{head}.{kind}.{self.adapter}.{leaf}")


def read_lora_file(file: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The tensors of a LoRA .safetensors and its diffusers adapter metadata (None when absent)."""
    from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY

    tensors, file_metadata = read_safetensors(file)
    raw = file_metadata.get(LORA_ADAPTER_METADATA_KEY)
    try:
        metadata = json.loads(raw) if raw else None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file}: its {LORA_ADAPTER_METADATA_KEY} metadata is not valid JSON: {exc}") from exc
    return tensors, metadata


def load_wan_lora(pipe, component: str, file: Path, adapter: str, *, what: str) -> LoadedLora:
    """Check ``file`` against ``pipe.<component>`` and load it there as adapter ``adapter``.

    ``what`` names the model in messages ("Wan 2.2 TI2V transformer"). Raises CheckpointError
    listing the keys that match no module (all of them: a LoRA for another model).
    """
    transformer = getattr(pipe, component)
    tensors, metadata = read_lora_file(file)
    if not tensors:
        raise CheckpointError(f"{file}: the LoRA holds no tensors")
    names = {k: normalize_key(k) for k in tensors}
    naming = "wan" if any(k.startswith("diffusion_model.") or _WAN_NATIVE.match(n) for k, n in names.items()) \
        else "diffusers"
    loaded = LoadedLora(file=file, component=component, adapter=adapter, naming=naming)

    # 1. Names: every file key to a diffusers parameter name (alphas kept aside, see the docstring).
    alpha_keys = {k for k, n in names.items() if n.endswith(".alpha")}
    weights = {k: t for k, t in tensors.items() if k not in alpha_keys}
    if naming == "wan":
        converted, bad = _convert_wan_names(weights, names)
        # The converter moves the file's tensor objects (alphas are out, so nothing is rescaled): map back by id.
        ids = {id(t): k for k, t in weights.items()}
        loaded.params = {ids[id(t)]: n for n, t in converted.items() if id(t) in ids}
        for k in weights:
            if k not in loaded.params and k not in bad:
                bad[k] = "not a LoRA tensor diffusers can load (dropped by its Wan LoRA converter)"
    else:
        converted = {names[k]: t for k, t in weights.items()}
        loaded.params = {k: names[k] for k in weights}
        bad = {}

    # 2. Every parameter against the transformer: module present, a Linear, shapes that fit. A module
    #    loads whole or not at all: one misfit tensor (lora_B of another width) fails its A and B.
    key_of = {n: k for k, n in loaded.params.items()}
    misfits = {name: why for name, t in converted.items() if (why := _misfit(transformer, name, t))}
    failed_modules = {name.rsplit(".", 2)[0]: why for name, why in misfits.items()}
    for name in list(converted):
        module = name.rsplit(".", 2)[0]
        if module in failed_modules:
            bad[key_of.get(name, name)] = misfits.get(name) or f"its module {module}: {failed_modules[module]}"
            converted.pop(name)
            loaded.params.pop(key_of.get(name, ""), None)

    # 3. Alphas: to their converted module, as network_alphas (values untouched).
    module_of = {_module(k, names[k]): n.rsplit(".", 2)[0] for k, n in loaded.params.items()}
    network_alphas = {}
    for k in sorted(alpha_keys):
        target = module_of.get(names[k][: -len(".alpha")])
        if target is None:
            bad[k] = "an alpha for a module with no loadable lora_A/lora_B"
            continue
        network_alphas[f"transformer.{target}.alpha"] = float(tensors[k].float().item())
        loaded.alphas[k] = (target, tuple(tensors[k].shape))

    if bad and len(bad) == len(tensors):
        examples = ", ".join(sorted(bad)[:3])
        raise CheckpointError(
            f"{file}: a checkpoint for another model: none of its {len(tensors)} LoRA tensors matches a module of "
            f"the {what} (e.g. {examples}: {bad[sorted(bad)[0]]}). Expected keys like "
            "transformer.blocks.0.attn1.to_q.lora_A.weight (diffusers) or blocks.0.self_attn.q.lora_A.default.weight "
            "(DiffSynth-Studio), with shapes that fit this model")
    if bad:
        raise CheckpointError(f"{file}: {len(bad)} of {len(tensors)} LoRA tensors match no module of the {what}:"
                              + listing([f"{k} ({why})" for k, why in sorted(bad.items())]))
    if metadata and network_alphas:
        raise CheckpointError(f"{file}: it has both diffusers adapter metadata and .alpha tensors: the LoRA "
                              "scale is ambiguous")

    # 4. Load with diffusers (peft underneath), then check every file tensor has a running parameter.
    state_dict = {f"transformer.{n}": t for n, t in converted.items()}
    try:
        transformer.load_lora_adapter(state_dict, prefix="transformer", adapter_name=adapter, metadata=metadata,
                                      network_alphas=network_alphas or None, _pipeline=pipe)
    except LOAD_ERRORS as exc:
        raise CheckpointError(f"{file}: diffusers could not load it as a LoRA of the {what}: {exc}") from exc
    missing = [k for k in tensors if loaded.running_tensor(transformer, k) is None]
    if missing:
        raise CheckpointError(f"{file}: loaded, but {len(missing)} of its tensors have no running LoRA parameter "
                              f"in the {what} (adapter metadata whose target_modules leave them out?):"
                              + listing(missing))
    return loaded


def normalize_key(key: str) -> str:
    """A file key with peft's adapter segment and any trainer prefix removed (``transformer.`` too)."""
    name = _ADAPTER_SEGMENT.sub(r".\1.\2", key)
    stripped = True
    while stripped:
        stripped = False
        for prefix in FOREIGN_PREFIXES + ("transformer.",):
            if name.startswith(prefix):
                name, stripped = name[len(prefix):], True
                break
    return name


def _module(key: str, name: str) -> str:
    """The module a (normalized) LoRA key belongs to: ``blocks.0.self_attn.q`` for its A, B, alpha."""
    match = _LORA_PART.search(name)
    if match:
        return name[: match.start()]
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _convert_wan_names(weights: dict, names: dict) -> tuple[dict, dict]:
    """Original-Wan names -> diffusers names with diffusers' converter, one module group at a time.

    A group is one module (its A, B, diff_b ...), or a block's image keys k_img + v_img together (the
    converter converts those only as a pair). Returns the converted tensors (file tensors kept as the
    same objects, so the caller can map them back) and {file key: why} for groups it refused.
    """
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers

    groups: dict[str, list[str]] = {}
    for k in weights:
        module = _module(k, names[k])
        groups.setdefault(re.sub(r"\.cross_attn\.[kv]_img$", ".cross_attn.img", module), []).append(k)
    converted, bad = {}, {}
    for name, keys in groups.items():
        group = {f"diffusion_model.{names[k]}": weights[k] for k in keys}
        # The converter needs a block key to run at all: a top-level group (head.head, time_projection ...)
        # gets a placeholder one, whose output is dropped below.
        placeholder = None if name.startswith("blocks.") else torch.zeros(1)
        if placeholder is not None:
            group["diffusion_model.blocks.0.self_attn.q.diff_b"] = placeholder
        try:
            out = _convert_non_diffusers_wan_lora_to_diffusers(group)
        except (ValueError, KeyError, IndexError, RuntimeError, AttributeError):
            bad.update({k: "no Wan module of that name (diffusers' Wan LoRA converter cannot place it)" for k in keys})
            continue
        converted.update({n.removeprefix("transformer."): t for n, t in out.items() if t is not placeholder})
    return converted, bad


def _misfit(transformer, name: str, tensor: torch.Tensor) -> str | None:
    """Why LoRA parameter ``name`` (diffusers naming) cannot load into ``transformer``, or None."""
    parts = name.rsplit(".", 2)
    if len(parts) != 3 or parts[1] not in ("lora_A", "lora_B") or parts[2] not in ("weight", "bias"):
        return "not a lora_A/lora_B weight or bias"
    path, kind, leaf = parts
    try:
        module = transformer.get_submodule(path)
    except AttributeError:
        return f"no module {path}"
    if not isinstance(module, torch.nn.Linear):
        return f"{path} is a {type(module).__name__}, not a Linear"
    if kind == "lora_A" and (leaf != "weight" or tensor.ndim != 2 or tensor.shape[1] != module.in_features):
        return f"shape {list(tensor.shape)} does not fit {path} ({module.in_features} inputs)"
    if kind == "lora_B":
        ok = tensor.ndim == 2 and tensor.shape[0] == module.out_features if leaf == "weight" \
            else tensor.ndim == 1 and tensor.shape[0] == module.out_features
        if not ok:
            return f"shape {list(tensor.shape)} does not fit {path} ({module.out_features} outputs)"
    return None


def listing(items: list[str]) -> str:
    """Items as an indented list for a message, cut after LIST_AT_MOST."""
    shown = "\n  - ".join(items[:LIST_AT_MOST])
    more = f"\n  ... and {len(items) - LIST_AT_MOST} more" if len(items) > LIST_AT_MOST else ""
    return "\n  - " + shown + more


class AdapterSwitch:
    """``off()``: a context in which the given transformers run without their LoRA (nestable, never fused)."""

    def __init__(self, transformers: list) -> None:
        self.transformers = transformers
        self._depth = 0

    @contextlib.contextmanager
    def off(self) -> Iterator[None]:
        if self._depth == 0:
            for t in self.transformers:
                t.disable_lora()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                for t in self.transformers:
                    t.enable_lora()


# -- tiny LoRAs ----------------------------------------------------------------------------------------
#: Epoch files a tiny DiffSynth-Studio LoRA folder holds (the highest is the one loaded by default).
TINY_EPOCHS = 2


def random_lora(transformer, seed: int, *, rank: int = 4, b_gain: float = 1.0) -> dict[str, torch.Tensor]:
    """A seeded random LoRA on DiffSynth's target modules of ``transformer``, in peft's diffusers names
    (``blocks.0.attn1.to_q.lora_A.weight``). Drawn as nn.Linear initialises (uniform, +-1/sqrt(fan_in)),
    lora_B too (a zero lora_B would be a no-op), from a generator of its own; lora_B times ``b_gain``."""
    gen = torch.Generator("cpu").manual_seed(seed)
    state = {}
    for name, module in sorted(transformer.named_modules()):
        if not isinstance(module, torch.nn.Linear) or not any(name == t or name.endswith("." + t)
                                                               for t in LORA_TARGET_MODULES):
            continue
        a = (torch.rand(rank, module.in_features, generator=gen) * 2 - 1) / module.in_features ** 0.5
        b = (torch.rand(module.out_features, rank, generator=gen) * 2 - 1) / rank ** 0.5 * b_gain
        state[f"{name}.lora_A.weight"], state[f"{name}.lora_B.weight"] = a, b
    return state


def diffsynth_lora_key(name: str) -> str:
    """peft's diffusers LoRA name -> DiffSynth-Studio's: ``blocks.0.attn1.to_q.lora_A.weight`` ->
    ``blocks.0.self_attn.q.lora_A.default.weight`` (module renamed as diffusers' Wan conversion does)."""
    from .wan_native import to_native

    module, kind, leaf = name.rsplit(".", 2)
    native = to_native(f"{module}.{leaf}")
    if native is None:
        raise ValueError(f"{name}: no original-Wan name for module {module}")
    return f"{native[: -len(leaf) - 1]}.{kind}.default.{leaf}"


def save_diffsynth_epochs(transformer, folder: Path, seed: int, *, b_gain: float, rank: int = 4,
                          epochs: int = TINY_EPOCHS) -> list[Path]:
    """DiffSynth-Studio's LoRA layout: ``folder/epoch-N.safetensors`` (N = 0 .. epochs-1), each a different
    seeded random LoRA in DiffSynth's key names, alpha = rank (no alpha tensors, no metadata)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for epoch in range(epochs):
        state = random_lora(transformer, seed * 1000 + epoch, rank=rank, b_gain=b_gain)
        files.append(folder / f"epoch-{epoch}.safetensors")
        save_file({diffsynth_lora_key(k): t.contiguous() for k, t in state.items()}, str(files[-1]))
    return files


def save_random_lora(pipe_cls, transformer, out_dir: Path, weight_name: str, seed: int, *, rank: int = 4,
                     b_gain: float = 1.0) -> Path:
    """The older layout, diffusers' own: ``random_lora`` written with the pipeline's ``save_lora_weights``
    (``transformer.`` names, peft adapter metadata with alpha = rank)."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGET_MODULES)
    state = random_lora(transformer, seed, rank=rank, b_gain=b_gain)
    pipe_cls.save_lora_weights(str(out_dir), transformer_lora_layers=state, weight_name=weight_name,
                               transformer_lora_adapter_metadata=config.to_dict(), safe_serialization=True)
    return Path(out_dir) / weight_name


def write_diffusers_lora_folder(base: Path, out_dir: Path, files: dict[str, str], seed: int, *, b_gain: float,
                                generation: dict) -> Path:
    """The older layout, a real one too: a folder of LoRA files in diffusers' own naming, one per
    transformer component (``{"transformer": "pytorch_lora_weights.safetensors"}``), with a card naming
    ``base``. DiffSynth-Studio's layout is what make_tiny writes; this one keeps diffusers' loading tested."""
    from diffusers import WanImageToVideoPipeline

    def save(pipe, out: Path) -> None:
        for i, (component, name) in enumerate(files.items()):
            save_random_lora(WanImageToVideoPipeline, getattr(pipe, component), out, name, seed * 1000 + i,
                             b_gain=b_gain)

    return save_tiny(out_dir, lambda _: load_pretrained(WanImageToVideoPipeline, base, what="the tiny base"), seed,
                     base=base, save=save, generation=generation,
                     description="Tiny random LoRA(s) in diffusers' naming, for pytest-wiw self-tests.")
