"""Comparing two uint8 videos: how many elements differ, by how much, where, and the PSNR."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VideoDiff:
    mean_abs: float
    max_abs: int
    differing: int
    total: int
    first_at: tuple[int, ...] | None
    psnr_db: float
    #: mean squared difference, in squared uint8 levels
    mse: float = 0.0

    @property
    def identical(self) -> bool:
        return self.differing == 0

    def describe(self) -> str:
        """One line for a failure message, in uint8 levels (x/255)."""
        if self.identical:
            return f"all {self.total} values identical"
        where = "" if self.first_at is None else f", first at (b, t, c, y, x) = {self.first_at}"
        psnr = "inf" if math.isinf(self.psnr_db) else f"{self.psnr_db:.1f}"
        return (f"mean |diff| {self.mean_abs:.3f}/255, max |diff| {self.max_abs}/255, "
                f"{self.differing} of {self.total} values differ{where}; PSNR {psnr} dB")

    def metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_mean_abs": round(self.mean_abs, 6), f"{prefix}_max_abs": self.max_abs,
                f"{prefix}_psnr_db": (None if math.isinf(self.psnr_db) else round(self.psnr_db, 3))}


def video_diff(a: np.ndarray, b: np.ndarray) -> VideoDiff:
    """Compare two uint8 videos of the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"cannot compare videos of shapes {a.shape} and {b.shape}")
    if np.array_equal(a, b):  # the usual verdict of a passing run, at a fraction of the passes below
        return VideoDiff(mean_abs=0.0, max_abs=0, differing=0, total=int(a.size), first_at=None, psnr_db=math.inf)
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    differing = int(np.count_nonzero(d))
    # argmax of a mask finds the first difference without listing them all (np.argwhere on a 480x832
    # video that differs everywhere built a 0.8 GB index array and took seconds).
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(d != 0)), d.shape)) if differing else None
    # int64: a real-size video holds 20M values and unrelated ones square-sum to ~1e11, far past int32.
    d64 = d.ravel().astype(np.int64)
    mse = float(np.dot(d64, d64)) / max(d.size, 1)
    psnr = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
    return VideoDiff(mean_abs=float(d.mean(dtype=np.float64)), max_abs=int(d.max()) if d.size else 0, differing=differing,
                     total=int(d.size), first_at=first, psnr_db=psnr, mse=mse)
