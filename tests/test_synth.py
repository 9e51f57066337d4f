"""guad.synth: synthetic head CTs, findings, cohorts, CLI, preview."""

from __future__ import annotations

import csv
import hashlib

import nibabel as nib
import numpy as np
import pytest

from guad.cli import main
from guad.synth import BENIGN, CRITICAL, FINDINGS, generate_scan
from guad.synth.cohort import COLUMNS, PRESETS, remake_scan

SIZE = 64


@pytest.fixture(scope="module")
def normal():
    return generate_scan(seed=5, finding=None, size=SIZE)


def test_shapes_dtypes_orientation(normal):
    assert normal.hu.dtype == np.float32
    assert normal.hu.shape == (SIZE, SIZE, 32)
    assert nib.aff2axcodes(normal.affine) == ("L", "P", "S")
    np.testing.assert_allclose(normal.spacing, [240 / SIZE, 240 / SIZE, 5.0])
    for key in ("intracranial", "ventricles", "lesion"):
        assert normal.truth[key].dtype == bool and normal.truth[key].shape == normal.hu.shape
    assert not normal.truth["lesion"].any()


def test_tissue_hu_ranges(normal):
    hu, ic = normal.hu, normal.truth["intracranial"]
    vox_ml = np.prod(normal.spacing) / 1000
    assert 1100 < ic.sum() * vox_ml < 1800          # intracranial volume, mL
    assert 15 < normal.truth["ventricles"].sum() * vox_ml < 90
    assert 20 < np.median(hu[ic]) < 45               # brain
    assert np.median(hu[normal.truth["ventricles"]]) < 20  # CSF (partial volume at 3.75 mm)
    corner = hu[:4, :4, :]
    assert np.all(corner < -900)                     # air
    ring = hu[~ic & (hu > 300)]
    assert ring.size > 0 and 650 < np.percentile(ring, 90) < 1800  # skull


def test_same_seed_same_array_other_seed_differs():
    a = generate_scan(3, "ich", size=SIZE)
    b = generate_scan(3, "ich", size=SIZE)
    c = generate_scan(4, "ich", size=SIZE)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.truth["lesion"], b.truth["lesion"])
    assert not np.array_equal(a.hu, c.hu)


def test_noise_seed_rescans_the_same_patient(normal):
    """Only the scanner noise changes: the brain differs by noise alone (sd ~ sqrt(2) x the
    subject's noise sd), the truth masks not at all; the default noise is unchanged."""
    assert np.array_equal(generate_scan(5, None, size=SIZE, noise_seed=5 * 7919 + 17).hu, normal.hu)
    again = generate_scan(5, None, size=SIZE, noise_seed=1)
    for key in normal.truth:
        assert np.array_equal(again.truth[key], normal.truth[key])
    ic = normal.truth["intracranial"]
    d = (again.hu - normal.hu)[ic]
    assert abs(d.mean()) < 0.3
    assert 4.0 * 0.85 - 0.2 < d.std() / np.sqrt(2) < 4.0 * 1.15 + 0.2  # internal site: 4 HU +-15%
    row = {"scan_id": "x", "seed": "5", "site": "internal", "finding": "", "size": str(SIZE)}
    assert np.array_equal(remake_scan(row, noise_seed=1).hu, again.hu)


@pytest.mark.parametrize("finding", FINDINGS)
def test_every_finding_inserts_a_plausible_lesion(finding):
    ml, med = [], []
    # a thin subdural crescent on 3.75 mm pixels is mostly skull partial volume (median
    # > 90 HU for most seeds at 64 x 64, with either template): check it at 1.9 mm
    size = 128 if finding == "sdh" else SIZE
    for sev in (0.2, 0.9):
        s = generate_scan(11, finding, size=size, severity=sev)
        les = s.truth["lesion"]
        assert les.any(), f"{finding} at severity {sev}: empty lesion"
        assert (les <= s.truth["intracranial"]).all()
        ml.append(s.lesion_ml)
        med.append(np.median(s.hu[les]))
    assert 0 < ml[0] <= 400 and 0 < ml[1] <= 400
    lo, hi = {"ich": (38, 95), "sdh": (25, 90), "sah": (15, 80), "infarct": (5, 36),
              "mass": (5, 60), "hydrocephalus": (-5, 20), "lacune": (-5, 30),
              "calcification": (45, 400), "atrophy": (-5, 35)}[finding]
    assert all(lo <= m <= hi for m in med), (finding, med)
    if finding not in ("calcification",):
        assert ml[1] > ml[0], (finding, ml)  # severity grows the lesion


def test_class_lists():
    assert set(CRITICAL) == {"ich", "sdh", "sah", "infarct", "mass", "hydrocephalus"}
    assert set(BENIGN) == {"lacune", "calcification", "atrophy"}
    assert set(FINDINGS) == set(CRITICAL) | set(BENIGN)


def test_presets_mirror_the_design():
    for name in ("demo", "benchmark"):
        p = PRESETS[name]
        splits = {g.split for g in p.groups}
        assert splits == {"train", "val", "test"}
        test_sites = {g.site for g in p.groups if g.split == "test"}
        assert len(test_sites) >= 3
    assert PRESETS["demo"].n_scans >= 2000
    bench = PRESETS["benchmark"]
    per_class = {}
    for g in bench.groups:
        if g.split == "test":
            for f, c in g.mix.items():
                per_class[f] = per_class.get(f, 0) + c
    assert min(per_class.values()) >= 100


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_cohort_via_cli(tmp_path):
    out1, out2 = tmp_path / "a", tmp_path / "b"
    assert main(["synth", "--preset", "tiny", "--out", str(out1), "--seed", "1", "--quiet",
                 "--preview", "--size", "48"]) == 0
    rows = list(csv.DictReader(open(out1 / "manifest.csv")))
    assert list(rows[0].keys()) == COLUMNS
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert {r["label"] for r in rows} == {"normal", "benign", "critical"}
    assert len({r["site"] for r in rows if r["split"] == "test"}) >= 3
    for r in rows:
        assert (out1 / r["path"]).exists()
        assert (r["finding"] == "") == (r["label"] == "normal")
        has_lesion = (out1 / "lesions" / f"{r['scan_id']}.nii.gz").exists()
        assert has_lesion == (r["label"] != "normal")
    img = nib.load(out1 / rows[0]["path"])
    assert img.get_data_dtype() == np.int16 and nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert (out1 / "preview.png").stat().st_size > 1000
    # remaking one scan alone from its row equals what was written
    r = next(x for x in rows if x["finding"])
    again = remake_scan(r, size=48)
    written = np.asarray(nib.load(out1 / r["path"]).dataobj)
    assert np.array_equal(np.round(again.hu).astype(np.int16), written)
    assert abs(again.lesion_ml - float(r["lesion_ml"])) < 1e-3
    # same seed, same bytes (a second run writes only a few scans: --limit)
    assert main(["synth", "--preset", "tiny", "--out", str(out2), "--seed", "1", "--quiet",
                 "--size", "48", "--limit", "2"]) == 0
    for r in csv.DictReader(open(out2 / "manifest.csv")):
        assert _sha(out2 / r["path"]) == _sha(out1 / r["path"])
    # resuming skips what is written
    before = (out1 / rows[0]["path"]).stat().st_mtime_ns
    assert main(["synth", "--preset", "tiny", "--out", str(out1), "--seed", "1", "--quiet",
                 "--size", "48"]) == 0
    assert (out1 / rows[0]["path"]).stat().st_mtime_ns == before


def test_unknown_preset_is_a_user_error(tmp_path, capsys):
    assert main(["synth", "--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown preset" in capsys.readouterr().err
