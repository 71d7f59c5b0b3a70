"""Reductions over frames and weights at real size hold their value (#13 item 4's audit).

compare.py's sum of squares is tested in test_compare.py; these are the other reductions the audit read:
the contact sheet's heat map scale and the weight fingerprints' sums. Each is held against a float64 (or
exact integer) reference on inputs whose integer sums pass 2**31.
"""

import numpy as np
import torch

from pytest_wiw.checkpoints.fingerprint import fingerprint_tensor
from pytest_wiw.report.contact_sheet import rows_for_ft, shown_frames, shrunk

# WIW's real output size for a Wan/Cosmos run: 17 frames of 480x832.
REAL_SHAPE = (1, 17, 3, 480, 832)
INT32_MAX = 2**31 - 1


def test_heat_map_of_black_against_white_at_real_size_is_white_at_255():
    black, white = np.zeros(REAL_SHAPE, np.uint8), np.full(REAL_SHAPE, 255, np.uint8)
    assert int(black[0].size) * 255 > INT32_MAX  # an int32 sum of the differences would wrap
    # FT black, zero-shot white: FT - zero-shot is negative, which uint8 arithmetic would wrap to 1
    (_, zero), (_, ft), (label, heat) = rows_for_ft(black, white)
    assert "white = 255/255" in label
    assert heat.dtype == np.uint8 and (heat == 255).all()  # the largest difference, everywhere


def test_heat_map_scale_is_the_float64_mean_over_channels():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, REAL_SHAPE, dtype=np.uint8)
    b = rng.integers(0, 256, REAL_SHAPE, dtype=np.uint8)
    label = rows_for_ft(a, b)[2][0]
    reference = shrunk(np.abs(shown_frames(a[0]).astype(np.float64) - shown_frames(b[0]).astype(np.float64))
                       .mean(axis=1)).max()
    assert f"white = {reference:.0f}/255" in label


def test_fingerprint_sums_of_integer_tensors_beyond_int32():
    values = torch.full((2**23,), 1000, dtype=torch.int32)  # sums to 8.4e9, past int32
    fp = fingerprint_tensor(values)
    assert fp.sum == 1000.0 * 2**23
    assert np.isclose(fp.l2, 1000.0 * 2 ** 11.5, rtol=1e-12)


def test_fingerprint_sums_of_uint8_tensors_beyond_uint8_and_int32():
    values = torch.full((2**24,), 255, dtype=torch.uint8)  # 4.3e9
    assert fingerprint_tensor(values).sum == 255.0 * 2**24
