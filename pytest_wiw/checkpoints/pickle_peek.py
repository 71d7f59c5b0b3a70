"""What a refused pickle checkpoint is, told from its tensor names without unpickling it.

A pickle is refused (loading one can run code), but the refusal can still say what to do with it.
``torch.save`` writes a zip archive whose ``<name>/data.pkl`` holds the state dict's structure; its
tensor names are string constants of the pickle, which ``pickletools.genops`` lists by reading the
opcodes, never executing them. A raw Cosmos-Predict2 training checkpoint (``net.blocks.N...``) gets
the command of World-in-World's converter, which writes the diffusers transformer FTcosmos loads.
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from pathlib import Path

#: The structure pickle of a state dict is small (names and storage references, kilobytes to a few MB);
#: this bound keeps a huge legacy (non-zip) pickle from being scanned whole.
MAX_PICKLE_BYTES = 64 * 1024 * 1024
#: String constants read before the scan stops (a state dict names each tensor once).
MAX_STRINGS = 20_000
#: A Cosmos-Predict2 training checkpoint's DiT keys: ``net.blocks.0.self_attn.q_proj.weight``, maybe nested
#: one level (``model.net.blocks...``), as WIW's converter matches them.
COSMOS_TRAINING_KEY = re.compile(r"^(?:[^.]+\.)?net\.blocks\.\d+\.")
_STRING_OPCODES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
                   "STRING"}


def pickle_strings(path: Path) -> list[str]:
    """The string constants of a pickle file (or of a torch zip's ``data.pkl``), read without unpickling;
    [] when the file cannot be parsed as either."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                entry = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if entry is None or archive.getinfo(entry).file_size > MAX_PICKLE_BYTES:
                    return []
                with archive.open(entry) as fh:
                    return _strings(fh)
        with open(path, "rb") as fh:
            return _strings(fh)
    except (OSError, zipfile.BadZipFile):
        return []


def _strings(fh) -> list[str]:
    """String constants of the pickles in ``fh``, one after another (a legacy torch file holds several)."""
    out: list[str] = []
    try:
        while len(out) < MAX_STRINGS and fh.tell() < MAX_PICKLE_BYTES:
            for opcode, arg, _ in pickletools.genops(fh):
                if opcode.name in _STRING_OPCODES and isinstance(arg, (str, bytes)):
                    out.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
                    if len(out) >= MAX_STRINGS:
                        break
    except (ValueError, EOFError, OSError):  # the end of the pickles (raw storage bytes follow), or junk
        pass
    return out


def training_pickle_hint(path: Path) -> str:
    """A sentence on what to do with the refused pickle ``path``, or "" when it is of no known kind."""
    if not any(COSMOS_TRAINING_KEY.match(s) for s in pickle_strings(Path(path))):
        return ""
    return (" It is a raw Cosmos-Predict2 training checkpoint (keys net.blocks.N...): convert it with "
            "World-in-World's converter into the transformer FTcosmos loads, then test that folder: "
            f"python utils/pt_to_safetensors_cosmos.py --src_pt {path} "
            "--ref_safetensors BASE/transformer/diffusion_pytorch_model.safetensors "
            "--out FT_DIR/transformer/diffusion_pytorch_model.safetensors, then "
            "pytest --wm FTcosmos --ckpt-path=FT_DIR --base-ckpt-path=BASE (BASE: the Cosmos-Predict2 "
            "diffusers folder it was trained from)")
