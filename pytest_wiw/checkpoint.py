"""Checkpoints on disk: find their files, tell their format, parse safetensors headers and cards.

Nothing here imports torch: the plugin reads headers and cards in the pytest process, and the
worker uses the same code before it loads anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".tar")
ALLOW_PICKLE_HINT = "--wm-allow-pickle to convert it with torch.load(weights_only=True), which never runs code"
# A safetensors header is a JSON table of tensor names, dtypes, shapes and offsets. Real ones are
# kilobytes to a few MB; 100 MB is far beyond any real model and still safe to read into memory.
MAX_HEADER_BYTES = 100 * 1024 * 1024
SAFETENSORS_DTYPES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
# Fingerprinting every tensor of a 14B model would read all of it twice; a fixed, evenly spread
# sample of tensors catches a wrapper that loads the wrong weights just as well.
MAX_FINGERPRINT_TENSORS = 48
CARD_NAME = "README.md"
# accelerate's Accelerator.save_state(output_dir/checkpoint-<step>) writes the training state beside the
# models: optimizer, LR scheduler, sampler and grad-scaler states and each process's RNG states, as
# pickles (WIW's SVD-dagger training leaves them beside unet/). No model loads them, so in such a folder
# they are listed as not opened instead of refusing the folder; model weights in pickles are still refused.
ACCELERATE_FOLDER_RE = re.compile(r"^checkpoint-\d+$")
TRAINING_STATE_RE = re.compile(r"^(optimizer|scheduler|sampler|scaler|random_states|custom_checkpoint)(_\d+)?"
                               r"\.(bin|pkl|pt)$")
_HASH_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    offsets: tuple[int, int]


@dataclass
class Checkpoint:
    """A checkpoint on disk: its root path, format and weight files.

    format: ``diffusers`` (a pipeline folder with model_index.json), ``lora`` (a LoRA
    .safetensors, or a folder holding one, or several side by side: Wan 2.2 A14B's high- and
    low-noise experts), ``component`` (a folder with config.json and weights, e.g. a fine-tuned
    ``transformer/``), or ``safetensors`` (a bare weights file).
    """

    path: Path
    format: str
    files: tuple[Path, ...]
    card: dict = field(default_factory=dict)
    #: Files in the folder that are never opened, each with the reason (accelerate's training state, weights
    #: the wrapper does not load).
    not_opened: tuple[str, ...] = ()
    _sha256: str | None = None

    @property
    def root(self) -> Path:
        """The folder the checkpoint lives in (the path itself, or a file's parent)."""
        return self.path if self.path.is_dir() else self.path.parent

    @property
    def weight_file(self) -> Path:
        """The single weights file of a ``lora`` or ``safetensors`` checkpoint."""
        if len(self.files) != 1:
            raise CheckpointError(f"{self.path}: holds {len(self.files)} weight files "
                                  f"({', '.join(self.rel(f) for f in self.files)}), where one is expected")
        return self.files[0]

    def keep_only(self, files, *, reason: str) -> None:
        """Narrow the checkpoint to the weight ``files`` the wrapper loads (a training folder holding a
        model and its EMA copy, or full and fp16 variants): the rest are listed as not opened, and the
        worker audits and fingerprints what remains. Called by a wrapper inside its ``__init__``."""
        keep = [Path(f).absolute() for f in files]  # not resolve(): a weight file may be a symlink (hub cache)
        unknown = [f for f in keep if f not in self.files]
        if unknown or not keep:
            raise CheckpointError(f"{self.path}: cannot narrow the checkpoint to {[str(f) for f in files]}: "
                                  "not among its weight files")
        dropped = [f"{self.rel(f)} ({reason})" for f in self.files if f not in keep]
        self.files = tuple(f for f in self.files if f in keep)
        self.not_opened = self.not_opened + tuple(dropped)
        self._sha256 = None

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def sha256(self) -> str:
        """sha256 over the weight files (names and contents, in order), computed once."""
        if self._sha256 is None:
            h = hashlib.sha256()
            for f in self.files:
                h.update(self.rel(f).encode())
                with open(f, "rb") as fh:
                    while chunk := fh.read(_HASH_CHUNK):
                        h.update(chunk)
            self._sha256 = h.hexdigest()
        return self._sha256

    def rel(self, file: Path) -> str:
        return file.relative_to(self.root).as_posix() if file != self.path else file.name

    def tensor_index(self) -> dict[str, tuple[Path, str, TensorInfo]]:
        """Every tensor of the checkpoint by fingerprint key (see ``tensor_key``)."""
        index = {}
        for f in self.files:
            for name, info in read_safetensors_header(f).items():
                index[tensor_key(self, f, name)] = (f, name, info)
        return index

    def fingerprint_keys(self) -> list[str]:
        """The tensors whose running copies are compared with the files: all, or an even sample."""
        keys = sorted(k for k, (_, _, info) in self.tensor_index().items() if _is_float(info.dtype))
        if len(keys) <= MAX_FINGERPRINT_TENSORS:
            return keys
        step = (len(keys) - 1) / (MAX_FINGERPRINT_TENSORS - 1)
        return [keys[round(i * step)] for i in range(MAX_FINGERPRINT_TENSORS)]

    def describe(self) -> dict:
        out = {"path": str(self.path), "format": self.format,
               "files": [self.rel(f) for f in self.files], "size_bytes": self.size_bytes()}
        if self.not_opened:
            out["not_opened"] = list(self.not_opened)
        return out


def tensor_key(ckpt: Checkpoint, file: Path, name: str) -> str:
    """A tensor's fingerprint key: its own name, prefixed by its component folder when it has one.

    ``transformer/diffusion_pytorch_model.safetensors`` tensor ``blocks.0.ff.net.0.proj.weight``
    has key ``transformer/blocks.0.ff.net.0.proj.weight``; a LoRA file's tensors keep their names,
    prefixed by the file's name when the checkpoint has several LoRA files (their names repeat):
    ``wan22_low_noise_lora.safetensors/transformer.blocks.0.attn1.to_q.lora_A.weight``.
    """
    if ckpt.format == "lora" and len(ckpt.files) > 1:
        return f"{ckpt.rel(file)}/{name}"
    parent = file.parent.relative_to(ckpt.root).as_posix() if ckpt.path.is_dir() else "."
    return name if parent == "." else f"{parent}/{name}"


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("F", "BF"))


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Resolve ``path`` to a Checkpoint, or raise CheckpointError naming the file and the cause."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder (check --ckpt-path)")
    path = path.resolve()
    if path.is_file():
        return _open_file(path)
    weights, not_opened = _weight_files(path)
    if not weights:
        raise CheckpointError(f"{path}: the folder holds no .safetensors weights "
                              "(an empty or incomplete download?)")
    card = read_card(path)
    if (path / "model_index.json").is_file():
        fmt = "diffusers"
    elif (path / "config.json").is_file():
        fmt = "component"
    elif len(weights) == 1 and _looks_like_lora(weights[0]):
        fmt = "lora"
    elif all(w.parent == path for w in weights) and all(_looks_like_lora(w) for w in weights):
        fmt = "lora"  # LoRA files side by side, e.g. one per expert of Wan 2.2 A14B
    elif all(w.parent != path for w in weights) and len({w.parent for w in weights}) == 1:
        fmt = "component-folder"
    elif ACCELERATE_FOLDER_RE.match(path.name) and all((w.parent / "config.json").is_file() for w in weights):
        fmt = "component-folder"  # a training checkpoint: a model and its EMA copy (unet/, unet_ema/)
    else:
        raise CheckpointError(f"{path}: cannot tell the format: expected a diffusers pipeline folder "
                              "(model_index.json), a component folder (config.json + weights) or a LoRA "
                              f".safetensors; found {', '.join(w.name for w in weights[:5])}")
    return Checkpoint(path=path, format=fmt, files=tuple(weights), card=card, not_opened=tuple(not_opened))


def _open_file(path: Path) -> Checkpoint:
    if path.name.endswith(PICKLE_SUFFIXES):
        raise CheckpointError(f"{path}: pickle checkpoints are refused (loading one can run code): "
                              f"convert it to .safetensors, or give {ALLOW_PICKLE_HINT}")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: not a .safetensors file")
    fmt = "lora" if _looks_like_lora(path) else "safetensors"
    return Checkpoint(path=path, format=fmt, files=(path,), card=read_card(path.parent))


def is_training_state(file: Path, folder: Path) -> bool:
    """True for accelerate's training-state files directly inside a ``checkpoint-<step>`` folder."""
    return (ACCELERATE_FOLDER_RE.match(folder.name) is not None and file.parent == folder
            and TRAINING_STATE_RE.match(file.name) is not None)


def _weight_files(folder: Path) -> tuple[list[Path], list[str]]:
    """The folder's .safetensors files, and the training-state files of an accelerate folder (never opened)."""
    files, not_opened = [], []
    for f in sorted(folder.rglob("*")):
        if f.is_symlink() and not _inside(f.resolve(), folder):
            raise CheckpointError(f"{f}: symlink leads outside the checkpoint folder (to {f.resolve()})")
        if not f.is_file():
            continue
        if f.suffix == ".safetensors":
            files.append(f)
        elif is_training_state(f, folder):
            not_opened.append(f"{f.name} (accelerate training state: never opened)")
        elif f.name.endswith(PICKLE_SUFFIXES):
            raise CheckpointError(f"{f}: pickle weights are refused (loading one can run code): convert "
                                  f"them to .safetensors, or give {ALLOW_PICKLE_HINT}")
    return files, not_opened


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _looks_like_lora(file: Path) -> bool:
    names = read_safetensors_header(file)
    return any("lora" in n.lower() for n in names)


def read_safetensors_header(file: Path) -> dict[str, TensorInfo]:
    """Parse a .safetensors header without reading the tensors, checking it against the file size."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) < 8:
                raise CheckpointError(f"{file}: truncated: {size} bytes, shorter than a safetensors header")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > MAX_HEADER_BYTES or header_len > size - 8:
                raise CheckpointError(f"{file}: header claims {header_len} bytes but the file has {size}: "
                                      "truncated or not a safetensors file")
            header_bytes = fh.read(header_len)
    except OSError as exc:
        raise CheckpointError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: header is not valid JSON ({exc}): corrupt or not safetensors") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: header is not a JSON object: not a safetensors file")
    data_len = size - 8 - header_len
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _tensor_info(file, name, entry, data_len)
    return tensors


def _tensor_info(file: Path, name: str, entry: object, data_len: int) -> TensorInfo:
    try:
        dtype, shape, (start, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{file}: tensor {name!r} has a malformed header entry") from exc
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        raise CheckpointError(f"{file}: tensor {name!r} has unknown dtype {dtype!r}")
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise CheckpointError(f"{file}: tensor {name!r} has an invalid shape {list(shape)}")
    expected = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
    if not (isinstance(start, int) and isinstance(end, int)) or end - start != expected or start < 0:
        raise CheckpointError(f"{file}: tensor {name!r} ({dtype} {list(shape)}) has offsets {start}..{end}, "
                              f"which do not fit its {expected} bytes")
    if end > data_len:
        raise CheckpointError(f"{file}: tensor {name!r} ends at byte {end} of the data but the file holds "
                              f"{data_len}: the file is truncated (an interrupted copy or download?)")
    return TensorInfo(dtype=dtype, shape=shape, offsets=(start, end))


# -- cards ------------------------------------------------------------------------------------

def read_card(folder: Path) -> dict:
    """The YAML front matter of ``folder/README.md`` (a Hugging Face model card), or {}."""
    card = Path(folder) / CARD_NAME
    if not card.is_file():
        return {}
    text = card.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        raise CheckpointError(f"{card}: front matter opened with '---' is never closed")
    import yaml

    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{card}: front matter is not valid YAML: {exc}") from exc
    return data if isinstance(data, dict) else {}


def write_card(folder: Path, *, base_model: str | None, datasets: list[str], license: str,
               training_steps: int, generation: dict | None = None, description: str = "") -> Path:
    """Write a model card (README.md with YAML front matter) into ``folder``."""
    import yaml

    meta = {"license": license, "datasets": datasets, "training_steps": training_steps}
    if base_model:
        meta["base_model"] = base_model
    if generation:
        meta["pytest_wiw"] = {"generation": generation}
    text = "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + (description or "") + "\n"
    path = Path(folder) / CARD_NAME
    path.write_text(text, encoding="utf-8")
    return path


def card_generation(card: dict) -> dict:
    """Generation overrides a card declares under ``pytest_wiw: generation:``."""
    section = card.get("pytest_wiw") or {}
    return dict(section.get("generation") or {}) if isinstance(section, dict) else {}
