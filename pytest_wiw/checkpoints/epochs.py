"""Which weight files of a checkpoint are the checkpoint: one training epoch, or a list of paths.

DiffSynth-Studio (how WIW post-trains FTwan21, FTwan22 and FTwan22-14B) writes one file per epoch
into one folder: ``Wan2.1-I2V-14B-720P_lora_navigation/epoch-0.safetensors``, ``epoch-1...``; an
A14B post-train writes two such folders (``..._high_noise_lora/``, ``..._low_noise_lora/``). A folder
holding several epochs is one checkpoint at its highest epoch, or at the one ``--wm-opt epoch=N``
names; the other epochs are left out of the checkpoint (not hashed, not fingerprinted) and named in
its notes. The same rule applies in the pytest process and in the worker, so both see one file set.

``--ckpt-path FTwan22-14B=A,B`` (two LoRAs, one per expert) arrives here as one string ``A,B``:
``split_path_list`` tells such a list from a single path. A path that exists as written is one path,
commas included; a list whose members contain commas is not supported (give their parent folder).
"""

from __future__ import annotations

import re
from pathlib import Path

from pytest_wiw.errors import CheckpointError

#: DiffSynth-Studio's per-epoch file name.
EPOCH_FILE = re.compile(r"^epoch-(\d+)\.safetensors$")
#: The ``--wm-opt`` key that picks an epoch.
EPOCH_OPTION = "epoch"
#: Separator of a path list in one ``--ckpt-path`` value.
PATH_LIST_SEPARATOR = ","


def epoch_of(file: Path) -> int | None:
    """The epoch number of a DiffSynth ``epoch-N.safetensors`` file, else None."""
    match = EPOCH_FILE.match(file.name)
    return int(match.group(1)) if match else None


def parse_epoch(value: str | None) -> int | None:
    """``--wm-opt epoch=N`` as an int (None when not given); CheckpointError for anything but N >= 0."""
    if value is None or value == "":
        return None
    if not str(value).isdigit():
        raise CheckpointError(f"--wm-opt {EPOCH_OPTION}={value!r}: expected a whole number >= 0 (the N of "
                              "epoch-N.safetensors)")
    return int(value)


def pick_epochs(files: list[Path], epoch: int | None) -> tuple[list[Path], list[str]]:
    """``files`` with each folder's epoch files cut to one: the highest, or ``epoch``.

    Returns the files kept and one note per folder that held several epochs (or that was asked for
    one). A folder holding epoch files but not epoch ``epoch`` is a CheckpointError listing the
    epochs it holds. Files that are not epoch files are kept as they are.
    """
    by_folder: dict[Path, dict[int, Path]] = {}
    for f in files:
        n = epoch_of(f)
        if n is not None:
            by_folder.setdefault(f.parent, {})[n] = f
    dropped: set[Path] = set()
    notes = []
    for folder, epochs in sorted(by_folder.items()):
        found = ", ".join(str(n) for n in sorted(epochs))
        if epoch is None:
            chosen = max(epochs)
            how = f"the highest of epochs {found}; --wm-opt {EPOCH_OPTION}=N picks another"
        elif epoch in epochs:
            chosen = epoch
            how = f"--wm-opt {EPOCH_OPTION}={epoch}; epochs here: {found}"
        else:
            raise CheckpointError(f"{folder}: no epoch-{epoch}.safetensors (asked for by --wm-opt "
                                  f"{EPOCH_OPTION}={epoch}); this folder holds epochs {found}")
        if len(epochs) > 1 or epoch is not None:
            notes.append(f"{folder.name}/epoch-{chosen}.safetensors loaded ({how})")
        dropped.update(f for n, f in epochs.items() if n != chosen)
    return [f for f in files if f not in dropped], notes


def split_path_list(text: str) -> list[str] | None:
    """The members of a ``A,B`` path list, or None when ``text`` is one path (it exists, or has no comma)."""
    if PATH_LIST_SEPARATOR not in text or Path(text).expanduser().exists():
        return None
    parts = [p.strip() for p in text.split(PATH_LIST_SEPARATOR)]
    if any(not p for p in parts):
        raise CheckpointError(f"{text}: an empty member in the path list (expected PATH,PATH)")
    return parts
