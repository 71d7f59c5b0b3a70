"""When a checkpoint folder fails to load: which tensors are missing, unexpected or misshapen.

diffusers and transformers refuse a damaged folder with messages such as "Cannot copy out of meta
tensor" (a key is missing) or "look at the above report" (a shape differs). After such a failure
the worker builds each component of the folder from its own ``config.json`` on the meta device
(no memory, no weights) and compares its tensor names and shapes with the safetensors headers, so
the user reads the offending keys and files instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from pytest_wiw.api.worldmodel import saved_state_dict
from pytest_wiw.checkpoints.files import Checkpoint, read_safetensors_header

#: Keys listed per component and kind before the rest is counted.
LIST_AT_MOST = 8


def diagnose_folder(ckpt: Checkpoint) -> list[str]:
    """Sentences naming missing, unexpected and misshapen tensors per component folder of ``ckpt``."""
    if ckpt.format not in ("diffusers", "component", "component-folder"):
        return []
    folders = sorted({f.parent for f in ckpt.files})
    findings = []
    for folder in folders:
        try:
            model = _meta_model(folder)
        except Exception:  # noqa: BLE001 - a config we cannot build says nothing about the keys
            continue
        if model is None:
            continue
        stored = {}
        for file in sorted(folder.glob("*.safetensors")):
            stored.update({name: (file, info.shape) for name, info in read_safetensors_header(file).items()})
        state = saved_state_dict(model)
        expected = {name: tuple(t.shape) for name, t in state.items()}
        # Tied weights (T5's shared embedding) are saved once: a tensor is required under its first name.
        first_names = {id(t) for _, t in model.named_parameters()} | {id(t) for _, t in model.named_buffers()}
        required = {name for name, t in _named_tensors(model, state) if id(t) in first_names}
        findings += _compare(folder, ckpt, expected, required, stored)
    return findings


def _named_tensors(model, state: dict):
    """(saved name, tensor) pairs, each tensor named once: by its first name as the module lists it."""
    seen = set()
    for name, tensor in state.items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            yield name, tensor


def _meta_model(folder: Path):
    """The model ``folder/config.json`` describes, built on the meta device (None if it names none)."""
    import torch

    config_file = folder / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    with torch.device("meta"):
        if "_class_name" in config:  # a diffusers model
            import diffusers

            model = getattr(diffusers, config["_class_name"]).from_config(config)
        elif config.get("architectures"):  # a transformers model
            import transformers

            cls = getattr(transformers, config["architectures"][0])
            model = cls(transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True))
        else:
            return None
    return model


def _compare(folder: Path, ckpt: Checkpoint, expected: dict, required: set, stored: dict) -> list[str]:
    where = ckpt.rel(folder) if folder != ckpt.root else "."
    missing = sorted(required - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    misshapen = [f"{name} ({ckpt.rel(stored[name][0])}): {list(stored[name][1])} in the file, "
                 f"{list(expected[name])} in the model" for name in sorted(set(expected) & set(stored))
                 if tuple(stored[name][1]) != expected[name]]
    out = []
    for what, items in (("missing from the files", missing), ("not in the model", unexpected),
                        ("of another shape", misshapen)):
        if items:
            shown = ", ".join(items[:LIST_AT_MOST])
            more = f" and {len(items) - LIST_AT_MOST} more" if len(items) > LIST_AT_MOST else ""
            out.append(f"{where}/: {len(items)} tensor(s) {what}: {shown}{more}")
    return out
