"""guad.io: NIfTI and DICOM series -> float32 HU in LPS; one clear error per bad input."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from guad.errors import InputError
from guad.io import CTVolume, read_ct

CT2 = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests" / "77654033" / "CT2"


def head(shape=(48, 40, 12), seed=0) -> np.ndarray:
    """A tiny head: air, a 1000 HU skull shell, 30 HU brain, noise. (X, Y, Z) float32."""
    rng = np.random.default_rng(seed)
    g = np.indices(shape).astype(float)
    c = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((g[i] - c[i]) / (0.42 * shape[i])) ** 2 for i in range(2))
                + ((g[2] - c[2]) / (0.6 * shape[2])) ** 2)
    hu = np.where(r < 0.85, 30.0, np.where(r < 1.0, 1000.0, -1000.0))
    return (hu + rng.normal(0, 3, shape)).round().astype(np.float32)


def world(affine, ijk):
    return (affine @ np.r_[ijk, 1.0])[:3]


def save_nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 5.0, 1.0]) if affine is None else affine),
             str(path))
    return path


def expect(path, *words, **kw):
    """read_ct(path) must raise InputError naming `path` and containing every word."""
    with pytest.raises(InputError) as info:
        read_ct(path, **kw)
    msg = str(info.value)
    assert str(Path(path)) in msg or Path(path).name in msg, msg
    for w in words:
        assert w.lower() in msg.lower(), msg
    return msg


# ----------------------------------------------------------------------------- DICOM writer


def write_series(folder, hu, *, spacing=(0.5, 0.6, 5.0), iop=(1, 0, 0, 0, 1, 0),
                 origin=(-12.0, -10.0, 40.0), uid=None, order=None, rescale=True,
                 signed=True, modality="CT", compress=False, positions=None):
    """Write hu (X, Y, Z) as one DICOM file per slice; voxel (i, j, k) sits at
    origin + i*dc*row + j*dr*col + k*dz*normal (LPS mm). Returns the LPS->voxel truth."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or generate_uid()
    row, col = np.array(iop[:3], float), np.array(iop[3:], float)
    normal = np.cross(row, col)
    nz = hu.shape[2]
    order = range(nz) if order is None else order
    for n, k in enumerate(order):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = uid
        ds.StudyInstanceUID = "1.2.3"
        ds.Modality = modality
        ds.SeriesDescription = "test head"
        ds.InstanceNumber = k + 1
        pos = (np.array(origin) + k * spacing[2] * normal) if positions is None else positions[k]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.PixelSpacing = [spacing[1], spacing[0]]          # row spacing, column spacing
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        plane = hu[:, :, k].T                                # (rows, columns)
        if rescale:
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            stored = plane + 1024
        else:
            stored = plane
        ds.PixelRepresentation = 1 if signed else 0
        arr = stored.astype(np.int16 if signed else np.uint16)
        ds.PixelData = arr.tobytes()
        if compress:
            from pydicom.uid import JPEG2000Lossless
            ds.compress(JPEG2000Lossless, arr)
        ds.save_as(folder / f"IM{n:04d}", enforce_file_format=True)
    return uid


# ----------------------------------------------------------------------------- good inputs


def test_nifti_ras_input_is_returned_in_lps_with_the_same_world_positions(tmp_path):
    hu = head()
    ras = np.array([[2.0, 0, 0, -40], [0, 2.0, 0, -50], [0, 0, 5.0, -20], [0, 0, 0, 1]])
    p = save_nifti(tmp_path / "ras.nii.gz", hu.astype(np.int16), ras)
    ct = read_ct(p)
    assert isinstance(ct, CTVolume) and ct.hu.dtype == np.float32
    assert nib.aff2axcodes(ct.affine) == ("L", "P", "S")
    assert ct.hu.shape == hu.shape and ct.path == str(p)
    np.testing.assert_allclose(ct.spacing, [2, 2, 5])
    # voxel (3, 4, 5) of the RAS array is voxel (X-1-3, Y-1-4, 5) of the LPS array
    ijk = np.array([hu.shape[0] - 4, hu.shape[1] - 5, 5])
    assert ct.hu[tuple(ijk)] == hu[3, 4, 5]
    np.testing.assert_allclose(world(ct.affine, ijk), world(ras, [3, 4, 5]))


def test_nifti_scaling_and_single_volume_4d_are_accepted(tmp_path):
    hu = head()
    img = nib.Nifti1Image(((hu + 1024) / 2).astype(np.int16)[..., None],
                          np.diag([-2, -2, 5, 1.0]))   # already LPS
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, str(tmp_path / "s.nii"))
    ct = read_ct(tmp_path / "s.nii")
    assert ct.hu.shape == hu.shape
    assert np.abs(ct.hu - hu).max() <= 2.0


def test_dicom_series_shuffled_and_tilted_is_sorted_and_placed(tmp_path):
    hu = head()
    a = np.deg2rad(15)                     # a gantry-tilt-like oblique orientation
    iop = (1, 0, 0, 0, np.cos(a), np.sin(a))
    rng = np.random.default_rng(1)
    order = rng.permutation(hu.shape[2])
    write_series(tmp_path / "s", hu, iop=iop, order=order)
    ct = read_ct(tmp_path / "s")
    assert nib.aff2axcodes(ct.affine) == ("L", "P", "S")
    np.testing.assert_allclose(ct.spacing, [0.5, 0.6, 5.0], atol=1e-3)
    np.testing.assert_array_equal(ct.hu, hu)            # DICOM (col, row) = L, P already
    # voxel (i, j, k) -> LPS origin + i*0.5*row + j*0.6*col + k*5*normal
    row, col = np.array(iop[:3]), np.array(iop[3:])
    lps = np.array([-12.0, -10, 40]) + 7 * 0.5 * row + 3 * 0.6 * col + 4 * 5 * np.cross(row, col)
    np.testing.assert_allclose(world(ct.affine, [7, 3, 4]), lps * [-1, -1, 1], atol=1e-3)


def test_dicom_series_flipped_axes_is_reoriented_to_lps(tmp_path):
    hu = head()
    # rows run toward the patient's right, columns anterior (normal still superior)
    iop = (-1, 0, 0, 0, -1, 0)
    write_series(tmp_path / "s", hu, iop=iop, order=range(hu.shape[2] - 1, -1, -1))
    ct = read_ct(tmp_path / "s")
    assert nib.aff2axcodes(ct.affine) == ("L", "P", "S")
    np.testing.assert_array_equal(ct.hu, hu[::-1, ::-1, :])


def test_dicom_jpeg2000_series(tmp_path):
    hu = head()
    write_series(tmp_path / "j", hu, compress=True)
    f = next((tmp_path / "j").iterdir())
    assert pydicom.dcmread(f).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    np.testing.assert_array_equal(read_ct(tmp_path / "j").hu, hu)


def test_dicom_without_rescale_but_signed_hu_values_is_read_as_hu(tmp_path):
    hu = head()
    write_series(tmp_path / "s", hu, rescale=False)
    np.testing.assert_array_equal(read_ct(tmp_path / "s").hu, hu)


def test_pydicom_shipped_head_ct_series(tmp_path):
    assert CT2.is_dir(), "pydicom's test data should ship offline"
    # slices 2-4 are contiguous (1.25 mm apart) top-of-skull slices
    for name in ("17136", "17166", "17196"):
        shutil.copy(CT2 / name, tmp_path / name)
    ct = read_ct(tmp_path, min_slices=1, check_hu=False)   # 3 slices of bone: no air
    assert ct.hu.shape == (16, 16, 3) and ct.hu.dtype == np.float32
    assert nib.aff2axcodes(ct.affine) == ("L", "P", "S")
    np.testing.assert_allclose(ct.spacing, [0.488281, 0.488281, 1.25], atol=1e-4)
    ds = pydicom.dcmread(CT2 / "17166")
    np.testing.assert_array_equal(ct.hu[:, :, 1], ds.pixel_array.T.astype(np.float32) - 1024)
    np.testing.assert_allclose(world(ct.affine, [0, 0, 1]), [125.0, 128.100006, 104.269997],
                               atol=1e-3)
    assert ct.hu.max() > 1000                              # skull, in HU


def test_pydicom_shipped_series_default_rejects_four_slices():
    expect(CT2, "only 4 slices", "at least 8")


def test_pydicom_shipped_series_has_a_gap_between_its_first_slices():
    # real data: the first slice (at -99.5 mm) is 202 mm below the other three
    expect(CT2, "missing slices", "202.50 mm", "1.25 mm", min_slices=1)


# ----------------------------------------------------------------------------- bad inputs


def test_missing_path(tmp_path):
    expect(tmp_path / "nope.nii.gz", "no such file")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.nii.gz"
    p.write_bytes(b"")
    expect(p, "empty file")


def test_corrupt_nifti(tmp_path):
    p = tmp_path / "junk.nii"
    p.write_bytes(np.random.default_rng(0).bytes(2000))
    expect(p, "unreadable or corrupt")


def test_truncated_nifti_gz(tmp_path):
    p = save_nifti(tmp_path / "full.nii.gz", head().astype(np.int16))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    expect(cut, "truncated or corrupt")


def test_truncated_nifti_uncompressed(tmp_path):
    p = save_nifti(tmp_path / "full.nii", head().astype(np.int16))
    cut = tmp_path / "cut.nii"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    expect(cut, "truncated or corrupt")


def test_2d_image(tmp_path):
    p = save_nifti(tmp_path / "slice.nii.gz", head()[:, :, 5])
    expect(p, "not a 3d volume", "2d image")


def test_single_slice_3d_nifti_is_2d(tmp_path):
    p = save_nifti(tmp_path / "slice3.nii.gz", head()[:, :, 5:6])
    expect(p, "2d image")


def test_4d_series(tmp_path):
    p = save_nifti(tmp_path / "perf.nii.gz", np.stack([head()] * 3, axis=-1))
    expect(p, "not a 3d volume", "4d series", "3 volumes")


def test_fewer_than_8_slices(tmp_path):
    p = save_nifti(tmp_path / "short.nii.gz", head((48, 40, 5)))
    expect(p, "only 5 slices", "at least 8")


def test_mri_values_are_not_ct(tmp_path):
    mri = np.clip((head() + 1000) / 8, 0, 255)       # T1-like, 8-bit arbitrary units
    p = save_nifti(tmp_path / "t1.nii.gz", mri.astype(np.uint8))
    expect(p, "no air near -1000 hu and no bone", "not a head ct in hounsfield units", "mri")


def test_mri_with_large_values_still_has_no_air(tmp_path):
    mri = np.clip(head() + 1000, 0, None) * 0.8      # arbitrary units up to ~1600
    p = save_nifti(tmp_path / "t1big.nii.gz", mri.astype(np.float32))
    expect(p, "no air near -1000 hu", "not a head ct in hounsfield units")


def test_nan_values(tmp_path):
    hu = head()
    hu[3, 4, 5] = np.nan
    hu[6, 7, 8] = np.inf
    p = save_nifti(tmp_path / "nan.nii.gz", hu)
    expect(p, "2 voxels are nan or infinite", "1 nan", "1 infinite")


def test_unknown_file_type(tmp_path):
    p = tmp_path / "scan.png"
    p.write_bytes(b"\x89PNG....")
    expect(p, "not a nifti file")


def test_single_dicom_file_is_a_2d_image(tmp_path):
    write_series(tmp_path / "s", head())
    expect(next((tmp_path / "s").iterdir()), "single dicom file", "2d slice")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    expect(tmp_path / "empty", "empty folder")


def test_folder_of_subfolders_says_subfolders_are_not_searched(tmp_path):
    write_series(tmp_path / "top" / "series", head())
    expect(tmp_path / "top", "empty folder", "subfolders are not searched")


def test_dicom_folder_with_two_series_names_both(tmp_path):
    hu = head()
    a = write_series(tmp_path / "two", hu, uid="1.2.3.4.1")
    b = write_series(tmp_path / "b", hu, uid="1.2.3.4.2")
    for f in (tmp_path / "b").iterdir():
        shutil.move(f, tmp_path / "two" / ("B" + f.name))
    expect(tmp_path / "two", "2 dicom series", a, b, "exactly one series")


def test_dicom_duplicate_slice_positions(tmp_path):
    hu = head()
    pos = [np.array([-12.0, -10, 40 + 5 * k]) for k in range(hu.shape[2])]
    pos[6] = pos[5]
    write_series(tmp_path / "dup", hu, positions=pos)
    expect(tmp_path / "dup", "duplicate slice positions", "65.00 mm")


def test_dicom_missing_slice(tmp_path):
    hu = head()
    write_series(tmp_path / "gap", hu)
    (tmp_path / "gap" / "IM0006").unlink()
    expect(tmp_path / "gap", "missing slices", "10.00 mm", "5.00 mm")


def test_dicom_without_rescale_tags_and_raw_unsigned_values(tmp_path):
    hu = head()
    write_series(tmp_path / "raw", hu + 1024, rescale=False, signed=False)
    msg = expect(tmp_path / "raw", "no rescaleslope / rescaleintercept", "raw scanner values")
    assert "IM000" in msg                                  # names the file


def test_dicom_corrupt_file_in_series(tmp_path):
    write_series(tmp_path / "s", head())
    (tmp_path / "s" / "IM0003").write_bytes(np.random.default_rng(0).bytes(500))
    msg = expect(tmp_path / "s", "not a")
    assert "IM0003" in msg


def test_dicom_truncated_file_in_series(tmp_path):
    write_series(tmp_path / "s", head())
    f = tmp_path / "s" / "IM0004"
    f.write_bytes(f.read_bytes()[:-1000])
    msg = expect(tmp_path / "s", "IM0004")
    assert "truncated" in msg or "corrupt" in msg


def test_dicom_empty_file_in_series(tmp_path):
    write_series(tmp_path / "s", head())
    (tmp_path / "s" / "IM0002").write_bytes(b"")
    expect(tmp_path / "s", "IM0002", "empty file")


def test_dicom_mr_series_is_not_ct(tmp_path):
    write_series(tmp_path / "mr", head(), modality="MR")
    expect(tmp_path / "mr", "a MR series, not CT")


def test_dicom_missing_geometry(tmp_path):
    write_series(tmp_path / "s", head())
    f = tmp_path / "s" / "IM0001"
    ds = pydicom.dcmread(f)
    del ds.ImagePositionPatient
    ds.save_as(f)
    expect(tmp_path / "s", "IM0001", "ImagePositionPatient")


def test_gzip_that_is_not_nifti(tmp_path):
    p = tmp_path / "text.nii.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(b"hello, this is not an image" * 20)
    expect(p, "unreadable or corrupt")
