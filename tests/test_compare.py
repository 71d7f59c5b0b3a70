"""Video comparisons at real size: sums of squared differences must not overflow."""

import math

import numpy as np

from pytest_wiw.checks.compare import VideoDiff, video_diff

# WIW's real output size for a Wan/Cosmos run: 17 frames of 480x832, about 20M values.
REAL_SHAPE = (1, 17, 3, 480, 832)


def test_black_against_white_at_real_size():
    diff = video_diff(np.zeros(REAL_SHAPE, np.uint8), np.full(REAL_SHAPE, 255, np.uint8))
    assert diff.mean_abs == 255.0 and diff.max_abs == 255
    assert diff.differing == diff.total == math.prod(REAL_SHAPE)
    assert diff.mse == 65025.0 and diff.psnr_db == 0.0  # MSE 255**2
    assert diff.first_at == (0, 0, 0, 0, 0)


def test_random_videos_against_a_float64_reference():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, REAL_SHAPE, dtype=np.uint8)
    b = rng.integers(0, 256, REAL_SHAPE, dtype=np.uint8)
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    mse = float((d * d).mean())
    diff = video_diff(a, b)
    assert math.isclose(diff.mean_abs, float(d.mean()), rel_tol=1e-12)
    assert math.isclose(diff.mse, mse, rel_tol=1e-12)
    assert math.isclose(diff.psnr_db, 10 * math.log10(255.0**2 / mse), rel_tol=1e-12)
    assert diff.max_abs == int(d.max())


def test_identical_videos():
    a = np.full((1, 2, 3, 4, 4), 9, np.uint8)
    diff = video_diff(a, a.copy())
    assert diff.identical and math.isinf(diff.psnr_db) and diff.first_at is None


def test_identical_videos_take_the_short_path_with_the_same_verdict():
    """Equal videos (seed determinism, batch invariance and the honest baseline of a passing run) are recognised in
    one pass: the same figures the full comparison gives, and one changed value is still found."""
    video = np.random.default_rng(3).integers(0, 256, size=(1, 5, 3, 16, 24), dtype=np.uint8)
    same = video_diff(video, video.copy())
    assert same == VideoDiff(mean_abs=0.0, max_abs=0, differing=0, total=video.size, first_at=None,
                             psnr_db=math.inf, mse=0.0)
    assert same.identical and same.describe() == f"all {video.size} values identical"
    changed = video.copy()
    changed[0, 4, 2, 15, 23] ^= 1
    one = video_diff(video, changed)
    assert (one.differing, one.max_abs, one.first_at) == (1, 1, (0, 4, 2, 15, 23))
