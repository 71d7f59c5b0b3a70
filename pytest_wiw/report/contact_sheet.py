"""Contact sheets: the frames a wm_type generated, as one labelled PNG for the report.

FT types: zero-shot frames, FT frames, and their absolute difference as a heat map. Zero-shot types:
the seed runs (seed s, seed s', seed s again). Rows are labelled on the left; tiny frames are
enlarged (nearest neighbour) so they can be looked at, real-size frames shrunk, and a row shows at
most MAX_FRAMES frames spread over the video, so the sheet stays small enough to attach to a pull
request (a 480x832, 17-frame FT sheet at full size was a 60 MB PNG and took 4.5 s to write).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pytest_wiw.session.subject import SEED_OFFSET

# Frames are enlarged to at least this height so a 32-pixel tiny model's output can be seen...
MIN_FRAME_HEIGHT = 96
# ... and shrunk to at most this height, so a real-size video stays a thumbnail strip.
MAX_FRAME_HEIGHT = 192
#: Frames a row shows at most (evenly spread, first and last included).
MAX_FRAMES = 8
LABEL_WIDTH = 190
#: Height of the caption line under a captioned row's frames, and the width a captioned frame gets at least
#: (so "100.0 dB" fits under a 32-pixel tiny frame).
CAPTION_HEIGHT = 14
CAPTION_MIN_WIDTH = 56
PAD = 4
# Heat map colours for 0 (no difference) to 1 (the largest difference in the sheet): black, red, yellow, white.
_HEAT = np.array([[0, 0, 0], [180, 20, 20], [250, 200, 40], [255, 255, 255]], dtype=np.float64)


def heat_map(diff: np.ndarray) -> np.ndarray:
    """(T, H, W) absolute differences -> (T, 3, H, W) uint8 colours, scaled to the largest difference."""
    top = float(diff.max()) or 1.0
    x = np.clip(diff / top, 0, 1) * (len(_HEAT) - 1)
    lo = np.floor(x).astype(int).clip(0, len(_HEAT) - 2)
    frac = (x - lo)[..., None]
    rgb = _HEAT[lo] * (1 - frac) + _HEAT[lo + 1] * frac
    return rgb.round().astype(np.uint8).transpose(0, 3, 1, 2)


def shown_indices(count: int) -> list[int]:
    """Which of ``count`` frames a row shows: at most MAX_FRAMES, evenly spread over the video."""
    if count <= MAX_FRAMES:
        return list(range(count))
    return np.linspace(0, count - 1, MAX_FRAMES).round().astype(int).tolist()


def shown_frames(frames: np.ndarray) -> np.ndarray:
    """At most MAX_FRAMES of (T, ...) frames, evenly spread over the video."""
    return frames[shown_indices(len(frames))]


def shrunk(diff: np.ndarray) -> np.ndarray:
    """(T, H, W) differences averaged over k x k blocks so H is at most about MAX_FRAME_HEIGHT (the heat map
    of a real-size video is a thumbnail anyway; colouring every pixel of it took a second)."""
    _, h, w = diff.shape
    k = -(-h // MAX_FRAME_HEIGHT)
    if k <= 1 or w < k:
        return diff
    h2, w2 = h // k * k, w // k * k
    return diff[:, :h2, :w2].reshape(len(diff), h2 // k, k, w2 // k, k).mean(axis=(2, 4))


def rows_for_ft(ft: np.ndarray, zero_shot: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Rows for item 0 of an FT batch: its zero-shot frames, its FT frames, their difference as a heat map."""
    ft0, zero0 = shown_frames(ft[0]), shown_frames(zero_shot[0])
    diff = shrunk(np.abs(ft0.astype(np.int16) - zero0.astype(np.int16)).mean(axis=1))
    return [("zero-shot base", zero0), ("fine-tuned", ft0),
            (f"|FT - zero-shot|\n(white = {diff.max():.0f}/255)", heat_map(diff))]


def rows_for_ground_truth(sheet: dict) -> list[tuple]:
    """Rows for the first reference episode: its ground truth, then the zero-shot and FT videos, each of their
    frames captioned with its PSNR against the ground truth (pytest_wiw.session.subject.WMSubject.ground_truth_sheet)."""
    name = sheet["episode"]

    def captions(values):
        return [f"{v:.1f} dB" for v in values]

    return [(f"ground truth\n{name[:28]}", sheet["ground_truth"]),
            ("zero-shot vs truth\n(PSNR per frame)", sheet["zero_shot"], captions(sheet["psnr_zero_shot"])),
            ("fine-tuned vs truth\n(PSNR per frame)", sheet["ft"], captions(sheet["psnr_ft"]))]


def write_contact_sheet(path: Path, title: str, rows: list[tuple]) -> Path:
    """Write rows of (label, frames (T, 3, H, W) uint8) or (label, frames, one caption per frame) as one PNG
    (at most MAX_FRAMES frames a row; a caption is written under its frame)."""
    from PIL import Image, ImageDraw

    shown = []
    for label, frames, *rest in rows:
        keep = shown_indices(len(frames))
        shown.append((label, frames[keep], [rest[0][i] for i in keep] if rest else None))
    rows = shown
    _, _, h, w = rows[0][1].shape
    if h > MAX_FRAME_HEIGHT:
        fh, fw, resample = MAX_FRAME_HEIGHT, max(1, round(w * MAX_FRAME_HEIGHT / h)), Image.BILINEAR
    else:
        scale = max(1, -(-MIN_FRAME_HEIGHT // h))
        fh, fw, resample = h * scale, w * scale, Image.NEAREST
    title_h = 24
    cw = max(fw, CAPTION_MIN_WIDTH) if any(c for _, _, c in rows) else fw  # a column's width
    heights = [fh + PAD + (CAPTION_HEIGHT if captions else 0) for _, _, captions in rows]
    width = LABEL_WIDTH + max(len(frames) for _, frames, _ in rows) * (cw + PAD) + PAD
    height = title_h + sum(heights) + PAD
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 6), title, fill="black")
    y = title_h
    for (label, frames, captions), row_h in zip(rows, heights):
        draw.multiline_text((PAD, y + fh // 2 - 12), label, fill="black")
        for i, frame in enumerate(frames):
            tile = Image.fromarray(np.ascontiguousarray(frame.transpose(1, 2, 0))).resize((fw, fh), resample)
            sheet.paste(tile, (LABEL_WIDTH + i * (cw + PAD), y))
            if captions:
                draw.text((LABEL_WIDTH + i * (cw + PAD), y + fh + 1), captions[i], fill="black")
        y += row_h
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def write_subject_sheet(subject, path) -> None:
    """A PNG of what ``subject`` (a session.subject.WMSubject) generated (nothing when the floor did not run)."""
    floor = subject._floor
    if floor is None or floor.g1.frames is None:
        return
    title = f"{subject.spec.name}: request R, seed {subject.seed}"
    if floor.z is not None and floor.z.frames is not None and floor.z.frames.shape == floor.g1.frames.shape:
        rows = rows_for_ft(floor.g1.frames, floor.z.frames)
    else:
        rows = [(f"seed {subject.seed}", floor.g1.frames[0])]
        if floor.g2 is not None and floor.g2.frames is not None:
            rows.append((f"seed {subject.seed + SEED_OFFSET}", floor.g2.frames[0]))
        if floor.g3.frames is not None:
            rows.append((f"seed {subject.seed} again", floor.g3.frames[0]))
    sheet = subject.ground_truth_sheet
    if sheet is not None and sheet["ground_truth"].shape[1:] == rows[0][1].shape[1:]:
        rows += rows_for_ground_truth(sheet)
    if all(row[1].ndim == 4 and row[1].shape[1] == 3 and row[1].dtype == np.uint8 for row in rows):
        write_contact_sheet(path, title, rows)
