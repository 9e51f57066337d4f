import numpy as np
import pytest

from guad.maps import CaseMaps, grid_affine, has_case, has_input, load_case, resample_to, save_case


def case(rng):
    aff = np.diag([-0.8, 0.8, 5.0, 1.0])
    m = CaseMaps(affine=aff, input_hu=np.round(rng.normal(30, 5, (8, 8, 4))).astype(np.float32))
    for k in ("cmm", "fgm"):
        m.recon[k] = np.round(rng.normal(30, 5, (4, 4, 2))).astype(np.float32)  # a model's own grid
        m.signed[k] = np.zeros((4, 4, 2), np.float32)
    m.signed["fgm"][1, 1, 1] = 25.3
    m.signed["cmm"][0, 0, 0] = -12.5
    return m


def test_save_load_roundtrip_native_grids_and_same_bytes(tmp_path):
    m = case(np.random.default_rng(0))
    folder = save_case(tmp_path, "s1", m)
    first = (folder / "fgm_map.nii.gz").read_bytes()
    save_case(tmp_path, "s1", m)
    assert (folder / "fgm_map.nii.gz").read_bytes() == first
    assert has_case(tmp_path, "s1") and has_input(tmp_path, "s1") and not has_case(tmp_path, "s2")
    back = load_case(tmp_path, "s1")
    np.testing.assert_array_equal(back.input_hu, m.input_hu)
    assert back.recon["cmm"].shape == (4, 4, 2)
    assert back.signed["fgm"][1, 1, 1] == pytest.approx(25.3, abs=0.05)  # tenths of a HU
    np.testing.assert_allclose(back.spacing, (0.8, 0.8, 5.0), rtol=1e-6)


def test_display_puts_every_volume_on_the_input_grid_keeping_map_values(tmp_path):
    m = case(np.random.default_rng(1))
    d = m.display()
    assert d.recon["fgm"].shape == d.signed["cmm"].shape == (8, 8, 4)
    assert set(np.unique(d.signed["cmm"])) == {0.0, -12.5}
    assert (d.signed["cmm"] == -12.5).sum() == 8  # one native voxel = 2 x 2 x 2 display voxels
    assert m.display() is d  # computed once


def test_a_case_saved_without_input_needs_the_remade_input(tmp_path):
    m = case(np.random.default_rng(2))
    save_case(tmp_path, "s1", m, with_input=False)
    assert has_case(tmp_path, "s1") and not has_input(tmp_path, "s1")
    with pytest.raises(FileNotFoundError, match="input_hu"):
        load_case(tmp_path, "s1")
    back = load_case(tmp_path, "s1", m.input_hu, m.affine)
    assert back.display().recon["cmm"].shape == (8, 8, 4)


def test_grid_affine_covers_the_same_box():
    disp = np.diag([-1.0, 1.0, 5.0, 1.0])
    a = grid_affine(disp, (8, 8, 4), (4, 4, 2))
    # the coarse voxel 0 centre sits between display voxels 0 and 1
    np.testing.assert_allclose(a @ [0, 0, 0, 1], disp @ [0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(np.abs(np.diag(a))[:3], [2.0, 2.0, 10.0])


def test_resample_nearest_keeps_map_values():
    v = np.zeros((4, 4, 2), np.float32)
    v[1, 1, 0] = -12.5
    up = resample_to(v, (8, 8, 2), nearest=True)
    assert set(np.unique(up)) == {0.0, -12.5} and (up == -12.5).sum() == 4
