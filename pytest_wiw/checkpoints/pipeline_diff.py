"""Which components of an FT pipeline folder differ from its base's, compared file by file.

An FT type that swaps one component into its base (``finetune="transformer"`` or ``"unet"``) may be
given a whole diffusers pipeline folder (WIW's FTltx checkpoint is one): only that component runs
from it, every other one runs from the base. A VAE or text encoder that differs from the base's would
then be silently ignored, so ``checkpoint applied`` names each one that differs.

The comparison is cheap first: the safetensors headers (names, dtypes, shapes) of each component, then
the raw bytes of each tensor whose header entries agree (read in chunks, the same file opened once),
and a tensor stored in another dtype is compared after casting both to the coarser one. Other files
(configs, tokenizer files) are compared as parsed JSON without the library-version fields, or as bytes.
Nothing here imports torch unless two tensors of different dtypes must be compared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pytest_wiw.checkpoints.files import Checkpoint, TensorInfo, read_safetensors_header

#: Config fields that record who saved a file, not what it describes.
PROVENANCE_FIELDS = ("_diffusers_version", "_name_or_path", "transformers_version", "_commit_hash")
#: FT kinds that swap one pipeline component into the base (``finetune`` -> that component): given a whole
#: pipeline folder, such a type runs only that component of it.
SWAPPED_COMPONENT = {"transformer": "transformer", "unet": "unet"}
#: Bytes read at a time when tensor data is compared.
CHUNK_BYTES = 16 * 1024 * 1024
#: Tensor names a difference lists before it counts the rest.
LIST_AT_MOST = 3
#: Files the comparison never looks at: the card and the pipeline index (the index names classes, and a
#: pipeline saved from another class with the same components is no different model).
IGNORED_FILES = ("README.md", "model_index.json")


@dataclass
class ComponentDifference:
    """One component (a first-level folder of the pipeline) that differs from the base's."""

    name: str
    reasons: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.name}/: " + "; ".join(self.reasons)


def differing_components(ft: Checkpoint, base: Checkpoint, *, skip: tuple[str, ...] = ()) -> list[ComponentDifference]:
    """The components of the pipeline folder ``ft`` (other than ``skip``) that differ from ``base``'s.

    A component the base lacks differs too (a pipeline of another model, or with an extra module).
    """
    ft_root, base_root = ft.root, base.root
    out = []
    for name in pipeline_components(ft_root):
        if name in skip:
            continue
        reasons = _folder_differences(ft_root / name, base_root / name)
        if reasons:
            out.append(ComponentDifference(name, reasons))
    return out


def pipeline_components(folder: Path) -> list[str]:
    """The component folders ``model_index.json`` lists (other folders, such as training leftovers, are no
    part of the pipeline), sorted; every sub-folder when there is no readable index."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        index = None
    if isinstance(index, dict):
        names = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and None not in v]
    else:
        names = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    return sorted(n for n in names if (folder / n).is_dir())


def identical_weight_files(ft: Checkpoint, base: Checkpoint, *, component: str | None = None) -> list[str]:
    """The FT checkpoint's weight files (relative paths; only those under ``component/`` when given) whose
    tensors equal those of the file at the same relative path in ``base``, when every one of them does;
    else []. A base that is the FT itself, or holds its fine-tuned component, gives them all; a real
    fine-tune gives []."""
    same = []
    files = [f for f in ft.files if component is None or ft.rel(f).startswith(component + "/")]
    for file in files:
        rel = ft.rel(file)
        other = base.root / rel
        if not other.is_file() or _tensor_differences(_merged_header([file]), _merged_header([other])):
            return []
        same.append(rel)
    return same


def _folder_differences(ft_folder: Path, base_folder: Path) -> list[str]:
    if not base_folder.is_dir():
        return [f"the base has no {ft_folder.name}/ folder"]
    reasons = []
    ft_weights, base_weights = _weights_of(ft_folder), _weights_of(base_folder)
    if ft_weights or base_weights:
        reasons += _tensor_differences(_merged_header(ft_weights), _merged_header(base_weights))
    for file in sorted(f for f in ft_folder.rglob("*") if f.is_file() and f.suffix != ".safetensors"):
        rel = file.relative_to(ft_folder)
        if rel.name in IGNORED_FILES:
            continue
        other = base_folder / rel
        if not other.is_file():
            reasons.append(f"{rel.as_posix()} is not in the base")
        elif not _same_file_content(file, other):
            reasons.append(f"{rel.as_posix()} differs")
    return reasons


def _weights_of(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.safetensors"))


def _merged_header(files: list[Path]) -> dict[str, tuple[Path, TensorInfo]]:
    """Every tensor of ``files`` by name, with its file (shards merged: two saves may shard differently)."""
    merged = {}
    for file in files:
        merged.update({name: (file, info) for name, info in read_safetensors_header(file).items()})
    return merged


def _tensor_differences(ft: dict[str, tuple[Path, TensorInfo]], base: dict[str, tuple[Path, TensorInfo]]) -> list[str]:
    """How two sets of tensors differ, as sentences: names, then shapes, then values."""
    reasons = []
    only_ft, only_base = sorted(set(ft) - set(base)), sorted(set(base) - set(ft))
    if only_ft:
        reasons.append(f"{len(only_ft)} tensor(s) not in the base ({_names(only_ft)})")
    if only_base:
        reasons.append(f"{len(only_base)} tensor(s) of the base missing ({_names(only_base)})")
    common = sorted(set(ft) & set(base))
    reshaped = [k for k in common if ft[k][1].shape != base[k][1].shape]
    if reshaped:
        k = reshaped[0]
        reasons.append(f"{len(reshaped)} tensor(s) of another shape ({k}: {list(ft[k][1].shape)} here, "
                       f"{list(base[k][1].shape)} in the base)")
    changed = [k for k in common if k not in reshaped and not _same_values(k, ft[k], base[k])]
    if changed:
        files = ", ".join(sorted({ft[k][0].name for k in changed}))
        reasons.append(f"{len(changed)} of {len(common)} tensors of {files} hold other values than the base's "
                       f"({_names(changed)})")
    return reasons


def _names(names: list[str]) -> str:
    more = f" and {len(names) - LIST_AT_MOST} more" if len(names) > LIST_AT_MOST else ""
    return ", ".join(names[:LIST_AT_MOST]) + more


def _same_values(name: str, entry_a: tuple[Path, TensorInfo], entry_b: tuple[Path, TensorInfo]) -> bool:
    """Tensor ``name`` holds the same values in both files."""
    (file_a, a), (file_b, b) = entry_a, entry_b
    if a.dtype != b.dtype:
        return _same_after_cast(name, file_a, file_b)
    if _same_file(file_a, file_b) and a.offsets == b.offsets:
        return True
    with open(file_a, "rb") as fa, open(file_b, "rb") as fb:
        fa.seek(_data_start(file_a) + a.offsets[0])
        fb.seek(_data_start(file_b) + b.offsets[0])
        left = a.offsets[1] - a.offsets[0]
        while left > 0:
            n = min(CHUNK_BYTES, left)
            if fa.read(n) != fb.read(n):
                return False
            left -= n
    return True


def _same_after_cast(name: str, file_a: Path, file_b: Path) -> bool:
    """Equal once both are cast to the coarser dtype (a bf16 save of the base's float32 weights is the same
    model); integer against float never is."""
    import torch
    from safetensors import safe_open

    def load(file: Path):
        with safe_open(str(file), framework="pt") as fh:
            return fh.get_tensor(name)

    ta, tb = load(file_a), load(file_b)
    if ta.is_floating_point() != tb.is_floating_point():
        return False
    coarse = ta.dtype if ta.element_size() <= tb.element_size() else tb.dtype
    return torch.equal(ta.to(coarse), tb.to(coarse))


def _data_start(file: Path) -> int:
    with open(file, "rb") as fh:
        return 8 + int.from_bytes(fh.read(8), "little")


def _same_file(a: Path, b: Path) -> bool:
    """The same file on disk (one path, or two links to one hub-cache blob): equal without reading it."""
    try:
        return a.samefile(b)
    except OSError:
        return False


def _same_file_content(a: Path, b: Path) -> bool:
    if _same_file(a, b):
        return True
    if a.suffix == ".json":
        try:
            ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
        except (OSError, ValueError):
            pass
        else:
            return _without_provenance(ja) == _without_provenance(jb)
    return a.read_bytes() == b.read_bytes()


def _without_provenance(config):
    if isinstance(config, dict):
        return {k: v for k, v in config.items() if k not in PROVENANCE_FIELDS}
    return config
