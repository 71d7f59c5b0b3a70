"""Checkpoints on disk: find their files, tell their format, parse safetensors headers and cards.

Nothing here imports torch: the plugin reads headers and cards in the pytest process, and the
worker uses the same code before it loads anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from pytest_wiw.checkpoints.epochs import parse_epoch, pick_epochs, split_path_list
from pytest_wiw.checkpoints.pickle_peek import training_pickle_hint
from pytest_wiw.errors import CheckpointError

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
# A Hugging Face hub cache keeps one folder per repository, ``models--<org>--<name>``, holding
# ``blobs/<sha256>`` (the file contents), ``snapshots/<revision>/...`` (the repository's tree, every file a
# relative symlink into ``../../blobs``) and ``refs/<branch>`` (a file holding the revision).
HUB_REPO_PREFIX = "models--"
HUB_REPO_SEPARATOR = "--"
HUB_SNAPSHOTS = "snapshots"
HUB_REFS = "refs"
# diffusers names a weight variant's files by putting the variant before the extension (``_add_variant``
# in diffusers/utils/hub_utils.py): ``diffusion_pytorch_model.fp16.safetensors``, ``model.fp16.safetensors``,
# sharded ``diffusion_pytorch_model.fp16-00001-of-00002.safetensors``. Only diffusers' and transformers'
# own weight names are read this way: a LoRA or a training script's file may have dots of its own.
_VARIANT_FILE = re.compile(r"^(?:diffusion_pytorch_model|model)\.(?P<variant>[A-Za-z0-9_]+?)"
                           r"(?:-\d+-of-\d+)?\.safetensors$")
#: ``--wm-opt variant=none`` picks the files without a variant.
NO_VARIANT = "none"
#: The wrapper option that picks a variant where a folder holds several.
VARIANT_OPTION = "variant"
_VARIANT_FORMATS = ("diffusers", "component", "component-folder")


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    offsets: tuple[int, int]


@dataclass(frozen=True)
class HubSnapshot:
    """A snapshot folder of a Hugging Face hub cache: ``<cache>/models--org--name/snapshots/<revision>``."""

    repo_folder: Path
    repo_id: str
    revision: str
    #: The refs (branch or tag names, e.g. ``main``) that point at this revision.
    refs: tuple[str, ...] = ()

    def describe(self) -> dict:
        return {"repo_id": self.repo_id, "revision": self.revision, "refs": list(self.refs),
                "repo_folder": str(self.repo_folder)}


def hub_snapshot_of(path: Path) -> HubSnapshot | None:
    """The hub cache snapshot ``path`` is (or lies in), or None when it is not in a hub cache."""
    for folder in (path, *path.parents):
        repo = folder.parent.parent
        if folder.parent.name == HUB_SNAPSHOTS and repo.name.startswith(HUB_REPO_PREFIX):
            repo_id = repo.name[len(HUB_REPO_PREFIX):].replace(HUB_REPO_SEPARATOR, "/")
            return HubSnapshot(repo_folder=repo, repo_id=repo_id, revision=folder.name,
                               refs=_refs_naming(repo / HUB_REFS, folder.name))
    return None


def _refs_naming(refs_dir: Path, revision: str) -> tuple[str, ...]:
    if not refs_dir.is_dir():
        return ()
    found = []
    for ref in sorted(refs_dir.rglob("*")):
        try:
            if ref.is_file() and ref.read_text(encoding="utf-8", errors="replace").strip() == revision:
                found.append(ref.relative_to(refs_dir).as_posix())
        except OSError:
            continue
    return tuple(found)


@dataclass
class Checkpoint:
    """A checkpoint on disk: its root path, format and weight files.

    format: ``diffusers`` (a pipeline folder with model_index.json), ``lora`` (a LoRA
    .safetensors, or a folder holding one, or several side by side: Wan 2.2 A14B's high- and
    low-noise experts), ``component`` (a folder with config.json and weights, e.g. a fine-tuned
    ``transformer/``), or ``safetensors`` (a bare weights file, or a folder holding only one).
    """

    path: Path
    format: str
    files: tuple[Path, ...]
    card: dict = field(default_factory=dict)
    #: The hub cache snapshot the checkpoint lies in, if it does.
    hub: HubSnapshot | None = None
    #: The diffusers weight variant whose files ``files`` are (``fp16``...), None for the plain files.
    variant: str | None = None
    #: What was chosen while opening it (which epoch of a DiffSynth folder, which paths of a list).
    notes: list[str] = field(default_factory=list)
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
        """sha256 over the weight files (names and contents, in order), computed once, and kept across
        sessions in the digest cache while the files stay as they are (pytest_wiw.checkpoints.digest_cache's trust rule)."""
        if self._sha256 is None:
            from pytest_wiw.checkpoints.cache_dir import default_cache_dir
            from pytest_wiw.checkpoints.digest_cache import cached_digest

            self._sha256 = cached_digest([(self.rel(f), f) for f in self.files], self._hash_files,
                                         default_cache_dir())
        return self._sha256

    def _hash_files(self) -> str:
        h = hashlib.sha256()
        for f in self.files:
            h.update(self.rel(f).encode())
            with open(f, "rb") as fh:
                while chunk := fh.read(_HASH_CHUNK):
                    h.update(chunk)
        return h.hexdigest()

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
        if self.variant is not None:
            out["variant"] = self.variant
        if self.hub is not None:
            out["hub_snapshot"] = self.hub.describe()
        if self.not_opened:
            out["not_opened"] = list(self.not_opened)
        return out


def tensor_key(ckpt: Checkpoint, file: Path, name: str) -> str:
    """A tensor's fingerprint key: its own name, prefixed by its component folder when it has one.

    ``transformer/diffusion_pytorch_model.safetensors`` tensor ``blocks.0.ff.net.0.proj.weight``
    has key ``transformer/blocks.0.ff.net.0.proj.weight``; a LoRA file's tensors keep their names,
    prefixed by the file's name when the checkpoint has several LoRA files (their names repeat):
    ``wan22_low_noise_lora.safetensors/transformer.blocks.0.attn1.to_q.lora_A.weight``, and by its path
    when it lies in a subfolder (DiffSynth's A14B layout): ``x_low_noise_lora/epoch-0.safetensors/...``.
    """
    if ckpt.format == "lora" and (len(ckpt.files) > 1 or file.parent != ckpt.root):
        return f"{ckpt.rel(file)}/{name}"
    parent = file.parent.relative_to(ckpt.root).as_posix() if ckpt.path.is_dir() else "."
    return name if parent == "." else f"{parent}/{name}"


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("F", "BF"))


def open_checkpoint(path: str | Path, variant: str | None = None, *, epoch: str | int | None = None) -> Checkpoint:
    """Resolve ``path`` to a Checkpoint, or raise CheckpointError naming the file and the cause.

    ``variant`` (``--wm-opt variant=``) picks the diffusers weight variant of a folder that holds
    several (``fp16``, or ``none`` for the files without one); a folder holding one loads that one.
    ``path`` may be a ``A,B`` list of LoRA files or folders (``pytest_wiw.checkpoints.epochs``). ``epoch`` (the
    ``--wm-opt epoch=N`` value) picks the epoch of a folder of DiffSynth ``epoch-N.safetensors`` files;
    by default such a folder is its highest epoch.
    """
    members = split_path_list(str(path))
    if members is not None:
        return _open_list(members, epoch)
    path = Path(path).expanduser()
    if path.is_symlink() and not path.exists():
        raise CheckpointError(f"{path}: a symlink to {_link_target(path)}, which does not exist")
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder (check --ckpt-path)")
    path = _resolve_file(path) if path.is_file() else path.resolve()
    hub = hub_snapshot_of(path)
    if path.is_file():
        return _open_file(path, hub)
    weights, not_opened = _weight_files(path, hub)
    if not weights:
        raise CheckpointError(f"{path}: the folder holds no .safetensors weights "
                              "(an empty or incomplete download?)")
    card = read_card(path)
    notes: list[str] = []
    if (path / "model_index.json").is_file():
        fmt = "diffusers"
    elif (path / "config.json").is_file():
        fmt = "component"
    else:
        weights, notes = pick_epochs(weights, parse_epoch(epoch))
        fmt = _loose_format(path, weights)
    chosen = None
    if fmt in _VARIANT_FORMATS:
        weights, chosen = _pick_variant(path, weights, variant)
    return Checkpoint(path=path, format=fmt, files=tuple(weights), card=card, hub=hub, variant=chosen,
                      notes=notes, not_opened=tuple(not_opened))


def _loose_format(path: Path, weights: list[Path]) -> str:
    """The format of a folder that is neither a pipeline nor a component folder itself."""
    parents = {w.parent for w in weights}
    if all(_looks_like_lora(w) for w in weights):
        return "lora"  # one LoRA, or several (one per expert of Wan 2.2 A14B), side by side or in subfolders
    if len(weights) == 1 and weights[0].parent == path:
        return "safetensors"  # a bare state dict, e.g. DiffSynth's full fine-tune epoch-N.safetensors
    if path not in parents and (len(parents) == 1 or all((p / "config.json").is_file() for p in parents)):
        return "component-folder"  # transformer/, or transformer/ + transformer_2/ (both experts of A14B)
    raise CheckpointError(f"{path}: cannot tell the format: expected a diffusers pipeline folder "
                          "(model_index.json), a component folder (config.json + weights) or a LoRA "
                          f".safetensors; found {', '.join(w.name for w in weights[:5])}")


def _open_list(members: list[str], epoch: str | int | None) -> Checkpoint:
    """A checkpoint of the LoRAs named by a ``A,B`` list (each a file, or a folder holding one)."""
    text = ",".join(members)
    files: list[Path] = []
    notes: list[str] = []
    cards = []
    for member in members:
        if not Path(member).expanduser().exists():
            raise CheckpointError(f"{member}: no such file or folder (a member of the path list {text})")
        part = open_checkpoint(member, epoch=epoch)
        if part.format != "lora":
            raise CheckpointError(f"{part.path}: a path list takes LoRA .safetensors files or folders holding "
                                  f"them (one per expert), not a {part.format!r} checkpoint")
        files += part.files
        notes += part.notes
        cards.append(part.card)
    if len(set(files)) != len(files):
        raise CheckpointError(f"{text}: the path list names one LoRA file twice")
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    card = read_card(root) or next((c for c in cards if c), {})
    return Checkpoint(path=root, format="lora", files=tuple(files), card=card, notes=notes)


def weight_variant(file: Path) -> str | None:
    """The diffusers variant a weights file belongs to (``fp16`` for ``model.fp16.safetensors``), or None."""
    match = _VARIANT_FILE.match(file.name)
    return match["variant"] if match else None


def _pick_variant(path: Path, weights: list[Path], requested: str | None) -> tuple[list[Path], str | None]:
    """The weight files of one variant, and its name: the only one there, or the one ``requested``."""
    by_variant: dict[str | None, list[Path]] = {}
    for w in weights:
        by_variant.setdefault(weight_variant(w), []).append(w)
    if len(by_variant) == 1:
        (only,) = by_variant
        return weights, only
    found = ", ".join(f"{v or NO_VARIANT} ({', '.join(f.relative_to(path).as_posix() for f in files[:3])}"
                      f"{', ...' if len(files) > 3 else ''})" for v, files in sorted(
                          by_variant.items(), key=lambda item: item[0] or ""))
    if requested is None:
        raise CheckpointError(f"{path}: holds the weights in several diffusers variants: {found}; say which to "
                              f"load with --wm-opt {VARIANT_OPTION}=NAME (e.g. --wm-opt {VARIANT_OPTION}="
                              f"{next(v for v in by_variant if v)}; {VARIANT_OPTION}={NO_VARIANT} for the files "
                              "without a variant)")
    wanted = None if requested == NO_VARIANT else requested
    if wanted not in by_variant:
        raise CheckpointError(f"{path}: --wm-opt {VARIANT_OPTION}={requested}: no weights of that variant here; "
                              f"found {found}")
    chosen = by_variant[wanted]
    lacking = sorted({w.parent for w in weights} - {w.parent for w in chosen})
    if lacking:
        raise CheckpointError(f"{path}: --wm-opt {VARIANT_OPTION}={requested}: "
                              f"{', '.join(p.relative_to(path).as_posix() or '.' for p in lacking)} holds no weights "
                              f"of that variant; found {found}")
    return chosen, wanted


def _resolve_file(path: Path) -> Path:
    """A weights file's path with its folders' links resolved. A hub snapshot's file keeps its own name (it
    links to a blob named by its hash); any other file link is followed, as the user named that file."""
    in_folder = path.parent.resolve() / path.name
    return in_folder if hub_snapshot_of(in_folder) is not None else path.resolve()


def _open_file(path: Path, hub: HubSnapshot | None) -> Checkpoint:
    if path.name.endswith(PICKLE_SUFFIXES):
        raise CheckpointError(f"{path}: pickle checkpoints are refused (loading one can run code): "
                              f"convert it to .safetensors, or give {ALLOW_PICKLE_HINT}.{training_pickle_hint(path)}")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: not a .safetensors file")
    _check_link(path, path.parent, hub)
    fmt = "lora" if _looks_like_lora(path) else "safetensors"
    return Checkpoint(path=path, format=fmt, files=(path,), card=read_card(path.parent), hub=hub)


def is_training_state(file: Path, folder: Path) -> bool:
    """True for accelerate's training-state files directly inside a ``checkpoint-<step>`` folder."""
    return (ACCELERATE_FOLDER_RE.match(folder.name) is not None and file.parent == folder
            and TRAINING_STATE_RE.match(file.name) is not None)


def _weight_files(folder: Path, hub: HubSnapshot | None) -> tuple[list[Path], list[str]]:
    """The folder's .safetensors files, and the training-state files of an accelerate folder (never opened)."""
    files, not_opened = [], []
    for f in sorted(folder.rglob("*")):
        _check_link(f, folder, hub)
        if not f.is_file():
            continue
        if f.suffix == ".safetensors":
            files.append(f)
        elif is_training_state(f, folder):
            not_opened.append(f"{f.name} (accelerate training state: never opened)")
        elif f.name.endswith(PICKLE_SUFFIXES):
            raise CheckpointError(f"{f}: pickle weights are refused (loading one can run code): convert "
                                  f"them to .safetensors, or give {ALLOW_PICKLE_HINT}.{training_pickle_hint(f)}")
    return files, not_opened


def _check_link(f: Path, folder: Path, hub: HubSnapshot | None) -> None:
    """CheckpointError for a symlink that leads out of the checkpoint, or to nothing.

    In a hub cache snapshot every file is a link into the repository's ``blobs/``: a link may lead
    anywhere inside that ``models--*`` folder, and nowhere out of it. Elsewhere a link must stay in
    the checkpoint folder.
    """
    if not f.is_symlink():
        return
    target = f.resolve()
    if not target.exists():
        raise CheckpointError(f"{f}: a symlink to {_link_target(f)}, which does not exist "
                              "(an interrupted download, or a blob deleted from the hub cache?)")
    if hub is not None:
        if not _inside(target, hub.repo_folder):
            raise CheckpointError(f"{f}: symlink leads outside the hub cache repository folder {hub.repo_folder} "
                                  f"(to {target}): a hub snapshot's files link into its own blobs/ only; "
                                  "the cache was edited or copied without its blobs")
    elif not _inside(target, folder):
        raise CheckpointError(f"{f}: symlink leads outside the checkpoint folder (to {target})")


def _link_target(link: Path) -> str:
    try:
        return str(link.readlink())
    except OSError:
        return "?"


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
