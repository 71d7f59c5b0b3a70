"""Equirectangular panorama -> the perspective view a world model sees and generates.

WIW's Habitat collector stores each observation as an equirectangular panorama (width = 2 x height, the
agent's heading at the centre column, the horizon on the middle row, the agent's left to the left of
the centre). WIW turns panoramas into the front perspective view of a pinhole camera at a horizontal
field of view (90 degrees where its WM servers are fed panoramic observations) before a WM sees them.
This module does that projection itself: for each output pixel, the ray of a pinhole camera looking along
the heading, its longitude and latitude, and a bilinear sample of the panorama there (wrapping around
horizontally, clamped at the poles).
"""

from __future__ import annotations

import math

import numpy as np


def is_panorama(height: int, width: int) -> bool:
    """An equirectangular panorama covers 360 x 180 degrees: exactly twice as wide as high."""
    return width == 2 * height


def perspective_view(pano: np.ndarray, out_hw: tuple[int, int], hfov_deg: float = 90.0,
                     yaw_deg: float = 0.0) -> np.ndarray:
    """The (3, H, W) uint8 perspective view of a (3, Hp, Wp) uint8 panorama, looking ``yaw_deg`` to the right
    of the heading (level), with a horizontal field of view of ``hfov_deg`` degrees."""
    if not 0 < hfov_deg < 180:
        raise ValueError(f"horizontal field of view {hfov_deg} degrees: expected between 0 and 180")
    height, width = out_hw
    _, hp, wp = pano.shape
    focal = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    x = np.arange(width, dtype=np.float64) + 0.5 - width / 2
    y = np.arange(height, dtype=np.float64) + 0.5 - height / 2
    xx, yy = np.meshgrid(x, y)
    lon = np.arctan2(xx, focal) + math.radians(yaw_deg)  # right of the heading is positive
    lat = np.arctan2(-yy, np.hypot(xx, focal))  # up is positive
    px = (lon / (2 * math.pi) + 0.5) * wp - 0.5  # pixel centres: column c covers [c, c + 1)
    py = (0.5 - lat / math.pi) * hp - 0.5
    return _bilinear(pano.astype(np.float64), px, py)


def _bilinear(img: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Sample (C, H, W) ``img`` at fractional pixel positions, wrapping x around and clamping y."""
    _, h, w = img.shape
    x0 = np.floor(px).astype(np.int64)
    y0 = np.floor(py).astype(np.int64)
    fx, fy = px - x0, py - y0
    xa, xb = x0 % w, (x0 + 1) % w
    ya, yb = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    top = img[:, ya, xa] * (1 - fx) + img[:, ya, xb] * fx
    bottom = img[:, yb, xa] * (1 - fx) + img[:, yb, xb] * fx
    out = top * (1 - fy) + bottom * fy
    return out.round().clip(0, 255).astype(np.uint8)
