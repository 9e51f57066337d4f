import numpy as np

from guad.maps import CaseMaps, has_case, load_case, resample_to, save_case


def test_save_load_roundtrip_and_same_bytes(tmp_path):
    aff = np.diag([-0.8, 0.8, 5.0, 1.0])
    rng = np.random.default_rng(0)
    m = CaseMaps(affine=aff, input_hu=rng.normal(30, 5, (8, 8, 4)).astype(np.float32))
    for k in ("cmm", "fgm"):
        m.recon[k] = rng.normal(30, 5, (8, 8, 4)).astype(np.float32)
        m.signed[k] = np.zeros((8, 8, 4), np.float32)
    m.signed["fgm"][2, 2, 2] = 25.0
    folder = save_case(tmp_path, "s1", m)
    first = (folder / "fgm_map.nii.gz").read_bytes()
    save_case(tmp_path, "s1", m)
    assert (folder / "fgm_map.nii.gz").read_bytes() == first
    assert has_case(tmp_path, "s1") and not has_case(tmp_path, "s2")
    back = load_case(tmp_path, "s1")
    np.testing.assert_array_equal(back.input_hu, m.input_hu)
    assert back.signed["fgm"][2, 2, 2] == 25.0
    np.testing.assert_allclose(back.spacing, (0.8, 0.8, 5.0), rtol=1e-6)


def test_resample_nearest_keeps_map_values():
    v = np.zeros((4, 4, 2), np.float32)
    v[1, 1, 0] = -12.5
    up = resample_to(v, (8, 8, 2), nearest=True)
    assert up.shape == (8, 8, 2)
    assert set(np.unique(up)) == {0.0, -12.5}
    assert (up == -12.5).sum() == 4
