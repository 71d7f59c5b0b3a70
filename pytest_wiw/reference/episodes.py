"""Reference episodes: a start image, a task and its actions, and the frames that really followed.

The layout (docs/ground-truth.md), one folder per episode under a reference folder ``DIR``::

    DIR/<episode>/episode.json      {"format": "pytest-wiw-episode/1", "task_type": "navigation",
                                     "actions": [4, 1, 1, 2], "source": {...}}
    DIR/<episode>/start.png         the start observation (RGB)
    DIR/<episode>/frames/0000.png   the ground-truth video, frame by frame (RGB, all one size);
                     frames/0001.png ...

``actions`` is a WIW navigation row (ids 0-4, opening with the stop id 4 that WIW drops) for
``navigation``, or an instruction string for ``manipulation`` / ``freetext``. The ground truth may
have any size and frame count: the check maps it to the model's output the way the suite maps every
video (``pytest_wiw.api.worldmodel.map_video``). ``pytest-wiw import-habitat`` writes this layout from
World-in-World's Habitat collection (``pytest_wiw.reference.habitat_import``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.errors import EpisodeError, RequestError

FORMAT = "pytest-wiw-episode/1"
EPISODE_FILE = "episode.json"
START_FILE = "start.png"
FRAMES_DIR = "frames"


@dataclass
class Episode:
    """One reference episode, loaded: uint8 arrays in the suite's (3, H, W) channel order."""

    name: str
    task_type: str
    actions: list[int] | str
    start: np.ndarray  # (3, H, W) uint8
    frames: np.ndarray  # (T, 3, H, W) uint8, the ground truth
    source: dict = field(default_factory=dict)


def write_episode(folder: Path, *, task_type: str, actions, start: np.ndarray, frames: np.ndarray,
                  source: dict | None = None) -> Path:
    """Write one episode in the layout above (``start`` (3, H, W) and ``frames`` (T, 3, H, W), uint8)."""
    from PIL import Image

    folder = Path(folder)
    (folder / FRAMES_DIR).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(start.transpose(1, 2, 0))).save(folder / START_FILE)
    for i, frame in enumerate(frames):
        Image.fromarray(np.ascontiguousarray(frame.transpose(1, 2, 0))).save(folder / FRAMES_DIR / f"{i:04d}.png")
    meta = {"format": FORMAT, "task_type": task_type,
            "actions": actions if isinstance(actions, str) else [int(a) for a in actions],
            "source": source or {}}
    (folder / EPISODE_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return folder


def episode_folders(reference: Path) -> list[Path]:
    """The episode folders of a reference folder, in name order; EpisodeError when there are none."""
    reference = Path(reference)
    if not reference.is_dir():
        raise EpisodeError(f"--wm-reference {reference}: not a folder")
    found = sorted(p for p in reference.iterdir() if (p / EPISODE_FILE).is_file())
    if not found:
        raise EpisodeError(f"--wm-reference {reference}: no episode in it (no <episode>/{EPISODE_FILE}); "
                           "see docs/ground-truth.md, or make episodes with `pytest-wiw import-habitat ROOT OUT`")
    return found


def load_episode(folder: Path) -> Episode:
    """Read one episode; EpisodeError naming the file and what is wrong with it."""
    folder = Path(folder)
    meta_path = folder / EPISODE_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise EpisodeError(f"{meta_path}: not readable JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise EpisodeError(f"{meta_path}: expected a JSON object")
    if meta.get("format") != FORMAT:
        raise EpisodeError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    task_type, actions = meta.get("task_type"), meta.get("actions")
    start = _read_rgb(folder / START_FILE)
    try:  # the request's own validation names the field (task_type, an unknown action id, an empty instruction)
        GenerationRequest(images=start[None], actions=[actions], task_type=task_type, seed=0,
                          request_model_name="episode")
    except RequestError as exc:
        raise EpisodeError(f"{meta_path}: {exc}") from None
    frame_paths = sorted((folder / FRAMES_DIR).glob("*.png"))
    if not frame_paths:
        raise EpisodeError(f"{folder / FRAMES_DIR}: no ground-truth frames (*.png)")
    frames = [_read_rgb(p) for p in frame_paths]
    if len({f.shape for f in frames}) != 1:
        sizes = sorted({f"{f.shape[1]}x{f.shape[2]}" for f in frames})
        raise EpisodeError(f"{folder / FRAMES_DIR}: frames of different sizes ({', '.join(sizes)}); one size per episode")
    return Episode(folder.name, task_type, actions, start, np.stack(frames), meta.get("source") or {})


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise EpisodeError(f"{path}: missing") from None
    except (OSError, UnidentifiedImageError) as exc:
        raise EpisodeError(f"{path}: not a readable image: {exc}") from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1))
