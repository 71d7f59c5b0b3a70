"""Contact sheets: the frames a wm_type generated, as one labelled PNG for the report.

FT types: zero-shot frames, FT frames, and their absolute difference as a heat map. Zero-shot types:
the seed runs (seed s, seed s', seed s again). Rows are labelled on the left; tiny frames are
enlarged (nearest neighbour) so they can be looked at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Frames are enlarged to at least this height so a 32-pixel tiny model's output can be seen.
MIN_FRAME_HEIGHT = 96
LABEL_WIDTH = 190
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


def rows_for_ft(ft: np.ndarray, zero_shot: np.ndarray) -> list[tuple[str, np.ndarray]]:
    diff = np.abs(ft[0].astype(np.int16) - zero_shot[0].astype(np.int16)).mean(axis=1)
    return [("zero-shot base", zero_shot[0]), ("fine-tuned", ft[0]),
            (f"|FT - zero-shot|\n(white = {diff.max():.0f}/255)", heat_map(diff))]


def write_contact_sheet(path: Path, title: str, rows: list[tuple[str, np.ndarray]]) -> Path:
    """Write rows of (label, frames (T, 3, H, W) uint8) as one PNG."""
    from PIL import Image, ImageDraw

    t, _, h, w = rows[0][1].shape
    scale = max(1, -(-MIN_FRAME_HEIGHT // h))
    fh, fw = h * scale, w * scale
    title_h = 24
    width = LABEL_WIDTH + t * (fw + PAD) + PAD
    height = title_h + len(rows) * (fh + PAD) + PAD
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 6), title, fill="black")
    for r, (label, frames) in enumerate(rows):
        y = title_h + r * (fh + PAD)
        draw.multiline_text((PAD, y + fh // 2 - 12), label, fill="black")
        for i, frame in enumerate(frames):
            tile = Image.fromarray(np.ascontiguousarray(frame.transpose(1, 2, 0))).resize((fw, fh), Image.NEAREST)
            sheet.paste(tile, (LABEL_WIDTH + i * (fw + PAD), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
