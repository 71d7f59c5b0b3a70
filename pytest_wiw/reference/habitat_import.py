"""``pytest-wiw import-habitat ROOT OUT``: WIW's Habitat collection -> reference episodes.

WIW's collector (``scripts/data_collect.sh``, ``habitat_data/HabitatRenderer``) writes one folder per
waypoint of a trajectory, ``ROOT/<scene>/traj-<n>/waypoint-<k>/``, holding

- ``metadata.json``: ``{"scene-<scene>": {"traj-<n>": {"trajPoints": [...], "steps": {"waypoint-<k>":
  {"step-<j>": {"action": <id>, "coord": [[x, y, z], [w, x, y, z]], "habitat_camera_coord": ...}}}}}}``
  (the collector resets its record at each waypoint, so the file holds this waypoint's steps; a file that
  also holds earlier waypoints is read for this folder's own);
- ``step-<j>_type-rgb.png``: the observation after step j's action (an equirectangular panorama).

Each run of consecutive steps with both a record and a frame is cut into episodes of ``frames`` frames
(IMPORT_ASSUMPTIONS says how, and what WIW's public code leaves open), written in the layout of
``pytest_wiw.reference.episodes``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from pytest_wiw.errors import EpisodeError
from pytest_wiw.reference.episodes import _read_rgb, write_episode
from pytest_wiw.reference.equirect import is_panorama, perspective_view

#: Frames of an episode by default: WIW's FTcosmos and igen generate 14 (WIW-FACTS §4), one per step.
DEFAULT_FRAMES = 14
#: The perspective view of a panorama: WIW's downstream feeds its WM servers 480x480 views
#: (workers_cfg OUT_WIDTH/OUT_HEIGHT) at a 90-degree horizontal field of view when observations are panoramic.
DEFAULT_VIEW = (480, 480)
DEFAULT_HFOV = 90.0
#: Habitat's action ids (0 stop, 1 forward, 2 left, 3 right) -> WIW's navigation ids (4 stop, same others).
HABITAT_TO_WIW = {0: 4, 1: 1, 2: 2, 3: 3}
HABITAT_ACTION_NAMES = {"stop": 0, "move_forward": 1, "turn_left": 2, "turn_right": 3}
#: WIW's navigation rows open with the stop id, which its prompt templates drop.
ROW_OPENING = 4
_FRAME_RE = re.compile(r"^step-(\d+)_type-rgb\.png$")

IMPORT_ASSUMPTIONS = f"""\
How WIW's collection becomes episodes (what WIW's public code leaves open is marked ASSUMED):
  - Folders: every ROOT/**/waypoint-<k>/ holding metadata.json and step-<j>_type-rgb.png frames (the
    layout of habitat_data/HabitatRender.py). Episodes never span waypoints: the collector turns the agent
    towards each new waypoint between them (reset_heading), so the frames are not one continuous video.
  - Frame j is the observation after step j's action (the collector steps, then records). An episode
    starting at step j0 holds frames j0 .. j0+F-1 (F = --frames) as its ground truth; its start image is
    frame j0 (as FTsvd/dataset.py conditions on the first frame of a clip); its actions are WIW's row:
    the stop id 4, then the actions of steps j0+1 .. j0+F-1 (one per frame after the first).
    ASSUMED: the loader WIW trains with (utils/dataset_utils.get_actions) is not in its public repository;
    this is the alignment that FTsvd/dataset.py's clip of frames and per-frame actions implies.
  - Actions: Habitat's ids 1 forward, 2 turn left, 3 turn right are WIW's ids; Habitat's stop (0, never
    stepped by the collector) becomes WIW's stop 4. Names (move_forward, ...) are read too.
  - Panoramas: a frame exactly twice as wide as high is equirectangular and is turned into the level
    perspective view along the agent's heading (the panorama's centre column), --hfov degrees wide, at
    --view-size, sampled bilinearly (see docs/ground-truth.md). ASSUMED: the training-side conversion of
    WIW's text FT types is not public; this is what WIW's downstream does before sending panoramic
    observations to a WM server (convert_equi2per: yaw 0, pitch 0, 90 degrees, 480x480).
  - A step without a record or a frame ends a run of steps; a run shorter than --frames gives no episode.
"""


def import_habitat(root: Path, out: Path, *, frames: int = DEFAULT_FRAMES, stride: int | None = None,
                   max_episodes: int | None = None, view_hw: tuple[int, int] = DEFAULT_VIEW,
                   hfov: float = DEFAULT_HFOV, panorama: str = "auto") -> list[Path]:
    """Write reference episodes from WIW's Habitat collection under ``root`` into ``out``; their folders."""
    root, out = Path(root), Path(out)
    if frames < 2:
        raise EpisodeError(f"--frames {frames}: an episode needs at least 2 frames (a start and one step)")
    stride = stride or frames
    if not root.is_dir():
        raise EpisodeError(f"{root}: not a folder (give the output folder of WIW's scripts/data_collect.sh)")
    if out.exists() and any(out.iterdir()):
        raise EpisodeError(f"{out} is not empty; give a new or empty folder")
    metadata = sorted(root.rglob("metadata.json"))
    folders = [m.parent for m in metadata if m.parent.name.startswith("waypoint-")]
    if not folders:
        raise EpisodeError(f"{root}: no <scene>/traj-<n>/waypoint-<k>/metadata.json below it (is it the output "
                           "folder of WIW's Habitat collection, scripts/data_collect.sh?)")
    written: list[Path] = []
    for folder in folders:
        steps = waypoint_steps(folder)
        for run in consecutive_runs(sorted(steps)):
            for i in range(0, len(run) - frames + 1, stride):
                if max_episodes is not None and len(written) >= max_episodes:
                    return written
                window = run[i : i + frames]
                written.append(_write(folder, root, out, window, steps, view_hw, hfov, panorama))
    if not written:
        raise EpisodeError(f"{root}: no waypoint has {frames} consecutive steps with frames (lower --frames)")
    return written


def waypoint_steps(folder: Path) -> dict[int, dict]:
    """Step index -> {"action": WIW id, "frame": path} for the steps of one waypoint folder with both."""
    path = folder / "metadata.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EpisodeError(f"{path}: not readable JSON: {exc}") from None
    records = _waypoint_records(data, folder.name)
    if records is None:
        raise EpisodeError(f"{path}: holds no steps for {folder.name} (expected scene-*/traj-*/steps/{folder.name})")
    frames = {int(m[1]): p for p in folder.iterdir() if (m := _FRAME_RE.match(p.name))}
    steps = {}
    for key, record in records.items():
        match = re.fullmatch(r"step-(\d+)", key)
        if not match or not isinstance(record, dict) or "action" not in record:
            continue
        j = int(match[1])
        if j in frames:
            steps[j] = {"action": wiw_action(record["action"], f"{path}: {folder.name}/{key}"), "frame": frames[j]}
    return steps


def _waypoint_records(data, waypoint: str) -> dict | None:
    if not isinstance(data, dict):
        return None
    for scene in data.values():
        for traj in (scene.values() if isinstance(scene, dict) else ()):
            steps = traj.get("steps") if isinstance(traj, dict) else None
            if isinstance(steps, dict) and isinstance(steps.get(waypoint), dict):
                return steps[waypoint]
    return None


def wiw_action(action, where: str) -> int:
    """A Habitat action (id or name) as WIW's navigation id."""
    if isinstance(action, str) and action in HABITAT_ACTION_NAMES:
        action = HABITAT_ACTION_NAMES[action]
    if isinstance(action, bool) or not isinstance(action, int) or action not in HABITAT_TO_WIW:
        raise EpisodeError(f"{where}: action {action!r} is not a Habitat navigation action (0 stop, 1 move_forward, "
                           "2 turn_left, 3 turn_right)")
    return HABITAT_TO_WIW[action]


def consecutive_runs(indices: list[int]) -> list[list[int]]:
    """Sorted step indices split where one is missing: [0, 1, 2, 5, 6] -> [[0, 1, 2], [5, 6]]."""
    runs: list[list[int]] = []
    for j in indices:
        if runs and j == runs[-1][-1] + 1:
            runs[-1].append(j)
        else:
            runs.append([j])
    return runs


def _write(folder: Path, root: Path, out: Path, window: list[int], steps: dict, view_hw, hfov, panorama) -> Path:
    rel = folder.relative_to(root)
    raw = [_read_rgb(steps[j]["frame"]) for j in window]
    pano = panorama == "yes" or (panorama == "auto" and is_panorama(*raw[0].shape[1:]))
    views = [perspective_view(f, view_hw, hfov) for f in raw] if pano else raw
    if len({v.shape for v in views}) != 1:
        raise EpisodeError(f"{folder}: frames of steps {window[0]}..{window[-1]} differ in size")
    actions = [ROW_OPENING] + [steps[j]["action"] for j in window[1:]]
    source = {"importer": "pytest-wiw import-habitat", "waypoint_folder": str(rel), "steps": window,
              "panorama_to_perspective": {"hfov_deg": hfov, "view": list(view_hw)} if pano else None}
    return write_episode(out / "--".join(rel.parts + (f"step-{window[0]}",)), task_type="navigation",
                         actions=actions, start=views[0], frames=np.stack(views), source=source)
