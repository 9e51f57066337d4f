"""Viewer arithmetic: radiological orientation, windows, overlays, the largest-anomaly slice."""

import numpy as np
import pytest

from guad.viewer import (ORIENTATION_LABELS, Window, apply_window, max_anomaly_slice, n_slices,
                         overlay_signed, render_pane, row_stretch, take_slice, unit_to_hu)


def marked_volume():
    """(X, Y, Z) LPS volume with a marker at the patient's left, anterior, superior corner."""
    v = np.zeros((6, 5, 4), np.float32)
    v[5, 0, 3] = 1.0  # X=5: most Left; Y=0: most Anterior; Z=3: most Superior
    return v


def test_axial_is_radiological_patient_left_on_image_right_anterior_on_top():
    img = take_slice(marked_volume(), "axial", 3)
    assert img.shape == (5, 6)
    assert img[0, -1] == 1.0  # top row (anterior), right column (patient's left)
    assert ORIENTATION_LABELS["axial"] == ("R", "L", "A", "P")


def test_coronal_superior_on_top_left_on_right():
    img = take_slice(marked_volume(), "coronal", 0)
    assert img.shape == (4, 6)
    assert img[0, -1] == 1.0


def test_sagittal_superior_on_top_anterior_on_left():
    img = take_slice(marked_volume(), "sagittal", 5)
    assert img.shape == (4, 5)
    assert img[0, 0] == 1.0


def test_slice_counts_and_clipping():
    v = marked_volume()
    assert [n_slices(v.shape, p) for p in ("axial", "coronal", "sagittal")] == [4, 5, 6]
    assert take_slice(v, "axial", 99).shape == (5, 6)  # clipped to the last slice
    with pytest.raises(ValueError):
        take_slice(v, "oblique", 0)


def test_window_maps_level_to_mid_grey_and_clips():
    hu = np.array([-1000.0, 0.0, 40.0, 80.0, 1000.0])
    g = apply_window(hu, 80, 40)
    assert g.tolist() == [0, 0, 128, 255, 255]
    assert Window.preset("subdural") == Window(200, 75)
    with pytest.raises(ValueError):
        Window.preset("lung")


def test_overlay_red_for_hyperdense_blue_for_hypodense():
    grey = np.full((2, 2), 100, np.uint8)
    signed = np.array([[30.0, -30.0], [0.0, 0.0]])
    rgb = overlay_signed(grey, signed, opacity=1.0, full_scale_hu=30.0)
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert rgb[0, 1, 2] > rgb[0, 1, 0]
    assert tuple(rgb[1, 0]) == (100, 100, 100)


def test_max_anomaly_slice():
    m = np.zeros((6, 5, 4), np.float32)
    m[2, 3, 1] = -50.0
    m[0, 0, 2] = 10.0
    assert max_anomaly_slice(m, "axial") == 1
    assert max_anomaly_slice(m, "coronal") == 3
    assert max_anomaly_slice(m, "sagittal") == 2
    empty = np.zeros((6, 5, 4), np.float32)  # score 0: open mid-brain, not on the top slice
    assert [max_anomaly_slice(empty, p) for p in ("axial", "coronal", "sagittal")] == [2, 2, 3]


def test_thick_slices_are_stretched_in_reformats():
    assert row_stretch((1.0, 1.0, 5.0), "coronal") == 5.0
    hu = np.zeros((10, 10, 4), np.float32)
    pane = render_pane(hu, "coronal", 5, Window(80, 40), spacing=(1.0, 1.0, 5.0), signed=hu)
    assert pane.shape == (20, 10, 3) and pane.dtype == np.uint8


def test_unit_to_hu():
    assert unit_to_hu(np.array([0.0, 0.5, 1.0])).tolist() == [-10.0, 40.0, 90.0]
