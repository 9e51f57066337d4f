"""The paper's anomaly score on hand-made difference maps whose answer is known by hand.

A slab that spans the whole X-Y plane and is >= 2 voxels thick is unchanged by a 3x3x3
median (each boundary voxel sees 18 of 27 neighbours inside); a 1-voxel slab is erased (9 of 27).
"""

import numpy as np
import pytest

from guad.scoring import MIN_ABS_HU, anomaly_score, difference_map_hu


def slab(shape=(10, 10, 10), z0=3, thick=3, value=20.0):
    d = np.zeros(shape, np.float32)
    d[:, :, z0 : z0 + thick] = value
    return d


def test_thick_slab_survives_and_is_summed():
    d = slab(value=20.0)
    score, cleaned = anomaly_score(d, min_abs_hu=10.0)
    assert score == pytest.approx(10 * 10 * 3 * 20.0)
    np.testing.assert_array_equal(cleaned, d)


def test_values_under_threshold_are_removed_and_threshold_itself_kept():
    assert anomaly_score(slab(value=9.99), min_abs_hu=10.0)[0] == 0.0
    assert anomaly_score(slab(value=10.0), min_abs_hu=10.0)[0] == pytest.approx(300 * 10.0)
    # FGM's lower threshold keeps what CMM's removes
    assert anomaly_score(slab(value=8.0), MIN_ABS_HU["fgm"])[0] == pytest.approx(300 * 8.0)
    assert anomaly_score(slab(value=8.0), MIN_ABS_HU["cmm"])[0] == 0.0


def test_sign_is_kept_and_score_uses_absolute_values():
    d = slab(value=-25.0)
    score, cleaned = anomaly_score(d, min_abs_hu=10.0)
    assert score == pytest.approx(300 * 25.0)
    assert (cleaned <= 0).all() and cleaned.min() == -25.0
    # hyper- and hypodense slabs side by side: both kept with their signs
    d2 = slab(value=30.0, z0=1) + slab(value=-15.0, z0=6)
    s2, c2 = anomaly_score(d2, min_abs_hu=10.0)
    assert s2 == pytest.approx(300 * 30 + 300 * 15)
    assert c2[:, :, 1:4].min() == 30.0 and c2[:, :, 6:9].max() == -15.0


def test_thin_slab_is_erased_by_the_median():
    assert anomaly_score(slab(thick=1), min_abs_hu=10.0, min_voxels=1)[0] == 0.0


def test_median_is_applied_twice():
    # A 3x3x3 cube: one median pass leaves its centre and 6 face centres (7 voxels);
    # the second pass erases the centre too (7 of 27 neighbours).
    d = np.zeros((9, 9, 9), np.float32)
    d[3:6, 3:6, 3:6] = 50.0
    score, cleaned = anomaly_score(d, min_abs_hu=10.0, min_voxels=1)
    assert score == 0.0 and not cleaned.any()
    # a 5x5x5 cube keeps a core after two passes
    d[:] = 0
    d[2:7, 2:7, 2:7] = 50.0
    score, cleaned = anomaly_score(d, min_abs_hu=10.0, min_voxels=1)
    assert score > 0 and cleaned[4, 4, 4] == 50.0 and cleaned[2, 2, 2] == 0.0


def test_median_window_per_axis():
    # A one-slice sheet (full X-Y plane, 1 voxel in Z): the paper's 3x3x3 window erases it;
    # an in-plane window (radius 0 across slices) keeps it whole, a slice-axis one erases it.
    thin = slab(thick=1, value=20.0)
    assert anomaly_score(thin, 10.0, min_voxels=1, median_radius=1)[0] == 0.0
    score, cleaned = anomaly_score(thin, 10.0, min_voxels=1, median_radius=(1, 1, 0))
    assert score == pytest.approx(100 * 20.0)
    np.testing.assert_array_equal(cleaned, thin)
    assert anomaly_score(thin, 10.0, min_voxels=1, median_radius=(0, 0, 1))[0] == 0.0
    # no median at all: a lone voxel survives the threshold and a 1-voxel object rule
    d = np.zeros((5, 5, 5), np.float32)
    d[2, 2, 2] = -12.0
    score, cleaned = anomaly_score(d, 10.0, min_voxels=1, median_radius=0)
    assert score == pytest.approx(12.0) and cleaned[2, 2, 2] == -12.0
    assert anomaly_score(d, 10.0, min_voxels=1)[0] == 0.0  # the default is the paper's window
    with pytest.raises(ValueError, match="median_radius"):
        anomaly_score(d, 10.0, median_radius=(1, 1))


def test_objects_under_75_voxels_are_removed_at_75_kept():
    d = np.zeros((5, 5, 8), np.float32)
    d[:, :, 2:5] = 40.0  # 5 * 5 * 3 = 75 voxels, survives the median
    score, _ = anomaly_score(d, min_abs_hu=10.0)
    assert score == pytest.approx(75 * 40.0)
    score, cleaned = anomaly_score(d, min_abs_hu=10.0, min_voxels=76)
    assert score == 0.0 and not cleaned.any()


def test_small_object_removed_while_large_one_kept():
    d = slab(shape=(10, 10, 20), z0=2, thick=3, value=20.0)  # 300 voxels
    d[0:4, 0:4, 12:16] = 60.0  # a 4x4x4 corner block: 64 voxels before the median
    score, cleaned = anomaly_score(d, min_abs_hu=10.0)
    assert score == pytest.approx(300 * 20.0)
    assert not cleaned[:, :, 10:].any()


def test_bad_maps_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        anomaly_score(np.full((4, 4, 4), np.nan, np.float32), 10.0)
    with pytest.raises(ValueError, match="3D"):
        anomaly_score(np.zeros((4, 4), np.float32), 10.0)


def test_difference_map_is_in_hu_and_masked():
    x = np.full((4, 4, 4), 0.5, np.float32)
    r = np.full((4, 4, 4), 0.3, np.float32)
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3] = True
    d = difference_map_hu(x, r, mask)
    assert d[1, 0, 0] == pytest.approx(20.0)
    assert d[0, 0, 0] == 0.0
