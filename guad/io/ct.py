"""Read a head CT into one canonical form: float32 Hounsfield units, (X, Y, Z) in LPS.

Inputs
- a NIfTI file (`.nii`, `.nii.gz`), read with nibabel (scl_slope / scl_inter applied);
- a folder holding the slices of ONE DICOM series, read with pydicom (compressed transfer
  syntaxes such as JPEG 2000 decode through pylibjpeg). Slices are sorted by their position
  (ImagePositionPatient projected on the slice normal, the cross product of the two
  ImageOrientationPatient direction cosines), RescaleSlope / RescaleIntercept are applied and
  the affine is built from ImageOrientationPatient, ImagePositionPatient and PixelSpacing.
  The slice step is the mean position difference, so a gantry tilt gives a sheared affine
  that still maps every voxel to its true place.

Every array is then reoriented to LPS (`nibabel.aff2axcodes(affine) == ('L', 'P', 'S')`) with
`nibabel.orientations`, the affine moving with it: axis 0 toward the patient's left, axis 1
posterior, axis 2 superior. Only axes are permuted and flipped; nothing is resampled.

Every bad input raises `InputError(path, problem)` naming the file and the problem:
missing, empty, unreadable / corrupt / truncated files; not a 3D volume (a 2D image, a 4D
series); fewer than `min_slices` slices (8 by default); NaN or infinite values; values that
are not CT in HU (a head CT has air near -1000 HU and bone above 300 HU; an MRI has neither);
in a DICOM folder: two series, a non-CT modality, missing geometry tags, slices of different
size or orientation, duplicate positions, missing slices (irregular spacing), and stored
values that need a rescale when no RescaleSlope / RescaleIntercept is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guad.errors import InputError

MIN_SLICES = 8
# "Is this CT in HU?" A raw head CT holds air (outside the head, sinuses) and skull.
AIR_HU, MIN_AIR_FRACTION = -900.0, 0.01
BONE_HU, MIN_BONE_FRACTION = 300.0, 0.001
# DICOM slice spacing: a step differing from the median by more than this is a gap / overlap.
SPACING_RTOL = 0.1
DUPLICATE_MM = 0.01
# Files that may sit next to a series and are not slices.
_IGNORED_NAMES = {"DICOMDIR", "Thumbs.db", "desktop.ini"}


@dataclass
class CTVolume:
    """A CT volume in canonical form.

    hu:     float32 (X, Y, Z), LPS, Hounsfield units
    affine: (4, 4) float64 NIfTI affine (voxel -> RAS+ world mm) of that array
    path:   the file or folder it came from
    """

    hu: np.ndarray
    affine: np.ndarray
    path: str

    @property
    def spacing(self) -> np.ndarray:
        """(3,) voxel size in mm along X, Y, Z (lengths of the affine's columns)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)


def read_ct(path: str | os.PathLike, *, min_slices: int = MIN_SLICES,
            check_hu: bool = True) -> CTVolume:
    """Read a NIfTI file or a folder holding one DICOM series; see the module docstring.

    min_slices: fewer slices than this is an error (the product needs 8; tests of tiny
        real series lower it).
    check_hu: require air and bone (a raw head CT in HU). Only tests of cropped real
        series turn this off.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or folder")
    if p.is_dir():
        return read_dicom_series(p, min_slices=min_slices, check_hu=check_hu)
    name = p.name.lower()
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return read_nifti(p, min_slices=min_slices, check_hu=check_hu)
    if p.stat().st_size == 0:
        raise InputError(p, "empty file (0 bytes)")
    if _looks_like_dicom(p):
        raise InputError(p, "a single DICOM file is one 2D slice, not a 3D volume: "
                            "give the folder holding the whole series")
    raise InputError(p, "not a NIfTI file (.nii, .nii.gz) nor a folder of DICOM files")


# ----------------------------------------------------------------------------- NIfTI


def read_nifti(path: str | os.PathLike, *, min_slices: int = MIN_SLICES,
               check_hu: bool = True) -> CTVolume:
    """Read a NIfTI file to float32 HU in LPS (see `read_ct`)."""
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such file")
    if p.stat().st_size == 0:
        raise InputError(p, "empty file (0 bytes)")
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises many kinds for garbage headers
        raise InputError(p, f"unreadable or corrupt NIfTI file ({_short(exc)})") from None
    shape = tuple(int(s) for s in img.shape)
    # Drop trailing singleton axes (a 4D file with one volume is a 3D volume).
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise InputError(p, f"not a 3D volume: a {len(shape)}D series of shape {shape} "
                            f"({int(np.prod(shape[3:]))} volumes); give one 3D CT")
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # EOFError, zlib.error, OSError, ValueError...
        raise InputError(p, f"truncated or corrupt image data ({_short(exc)})") from None
    data = data.reshape(shape)
    if data.ndim < 3 or min(data.shape[:3]) == 1:
        raise InputError(p, f"not a 3D volume: a 2D image of shape {tuple(data.shape)}")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(p, "corrupt header: the voxel-to-world affine is singular or not finite")
    hu, affine = to_lps(data, affine)
    validate_hu(hu, p, min_slices=min_slices, check_hu=check_hu)
    return CTVolume(hu=hu, affine=affine, path=str(p))


# ----------------------------------------------------------------------------- DICOM


def read_dicom_series(folder: str | os.PathLike, *, min_slices: int = MIN_SLICES,
                      check_hu: bool = True) -> CTVolume:
    """Read the one DICOM series in `folder` (not searched recursively) to float32 HU in LPS."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "no such folder")
    files = sorted(f for f in root.iterdir()
                   if f.is_file() and not f.name.startswith(".") and f.name not in _IGNORED_NAMES)
    if not files:
        sub = [d for d in root.iterdir() if d.is_dir()]
        hint = " (subfolders are not searched: give the folder of one series)" if sub else ""
        raise InputError(root, f"empty folder: no DICOM files{hint}")

    slices = []
    for f in files:
        if f.stat().st_size == 0:
            raise InputError(f, "empty file (0 bytes) in the DICOM folder")
        try:
            ds = pydicom.dcmread(str(f))
        except InvalidDicomError:
            try:  # DICOM without the 128-byte preamble
                ds = pydicom.dcmread(str(f), force=True)
            except Exception as exc:
                raise InputError(f, f"not a readable DICOM file ({_short(exc)})") from None
            if "SOPClassUID" not in ds and "PixelData" not in ds:
                raise InputError(f, "not a DICOM file (every file in the folder must be a "
                                    "slice of the series)")
        except Exception as exc:
            raise InputError(f, f"unreadable, corrupt or truncated DICOM file ({_short(exc)})"
                             ) from None
        if "PixelData" not in ds:
            raise InputError(f, "DICOM file without pixel data (not an image slice)")
        slices.append((f, ds))

    # One series per folder.
    series: dict[str, list] = {}
    for f, ds in slices:
        series.setdefault(str(ds.get("SeriesInstanceUID", "<no SeriesInstanceUID>")), []).append(
            (f, ds))
    if len(series) > 1:
        desc = "; ".join(
            f"{uid} ({str(items[0][1].get('SeriesDescription', '')).strip() or 'no description'}, "
            f"{len(items)} files)" for uid, items in series.items())
        raise InputError(root, f"holds {len(series)} DICOM series ({desc}); "
                               "give a folder with exactly one series")

    modality = str(slices[0][1].get("Modality", "")).upper()
    if modality and modality != "CT":
        raise InputError(root, f"a {modality} series, not CT")
    for f, ds in slices:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise InputError(f, f"multi-frame DICOM ({ds.NumberOfFrames} frames in one file) "
                                "is not supported: export the series as single-slice files")

    n = len(slices)
    if n == 1:
        raise InputError(root, "only 1 slice: a 2D image, not a 3D volume")
    if n < min_slices:
        raise InputError(root, f"only {n} slices; at least {min_slices} slices are needed")

    # Geometry.
    for f, ds in slices:
        missing = [t for t in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
                   if t not in ds]
        if missing:
            raise InputError(f, f"missing DICOM geometry tag(s) {', '.join(missing)}: "
                                "cannot place the slice")
    iop = np.array([float(v) for v in slices[0][1].ImageOrientationPatient])
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 1e-3:
        raise InputError(slices[0][0], "corrupt ImageOrientationPatient (parallel directions)")
    normal /= np.linalg.norm(normal)
    size = (int(slices[0][1].Rows), int(slices[0][1].Columns))
    spacing_rc = [float(v) for v in slices[0][1].PixelSpacing]
    for f, ds in slices:
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], iop, atol=1e-3):
            raise InputError(f, "slice orientation differs from the rest of the series")
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise InputError(f, f"slice size {ds.Rows}x{ds.Columns} differs from the series' "
                                f"{size[0]}x{size[1]}")
    ipp = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in slices])
    pos = ipp @ normal
    order = np.argsort(pos, kind="stable")
    slices = [slices[i] for i in order]
    ipp, pos = ipp[order], pos[order]
    steps = np.diff(pos)
    dup = np.flatnonzero(steps < DUPLICATE_MM)
    if dup.size:
        i = dup[0]
        raise InputError(root, f"duplicate slice positions: {slices[i][0].name} and "
                               f"{slices[i + 1][0].name} are both at {pos[i]:.2f} mm "
                               f"({dup.size} duplicate(s); a 4D series or repeated slices?)")
    med = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - med) > SPACING_RTOL * med)
    if bad.size:
        i = bad[0]
        kind = "missing slices" if steps[i] > med else "irregular slice spacing"
        raise InputError(root, f"{kind}: a step of {steps[i]:.2f} mm between {pos[i]:.2f} and "
                               f"{pos[i + 1]:.2f} mm where the series' spacing is {med:.2f} mm "
                               f"({bad.size} irregular step(s))")

    # Pixels -> HU.
    planes = []
    for f, ds in slices:
        try:
            arr = ds.pixel_array
        except Exception as exc:
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "?")
            raise InputError(f, f"cannot decode pixel data (corrupt, truncated or unsupported "
                                f"transfer syntax {ts}: {_short(exc)})") from None
        if arr.shape != size:
            raise InputError(f, f"pixel data of shape {arr.shape} is not one {size} slice")
        planes.append(_to_hu(f, ds, arr))
    vol_lps_rc = np.stack(planes, axis=-1)              # (rows, cols, slices)
    data = np.ascontiguousarray(vol_lps_rc.transpose(1, 0, 2))  # (cols i, rows j, slices k)

    # voxel (i, j, k) -> LPS world: IPP0 + i*dc*row_dir + j*dr*col_dir + k*step
    step = (ipp[-1] - ipp[0]) / (n - 1)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing_rc[1]
    lps[:3, 1] = col_dir * spacing_rc[0]
    lps[:3, 2] = step
    lps[:3, 3] = ipp[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps    # LPS world -> RAS+ world (NIfTI)
    hu, affine = to_lps(data, affine)
    validate_hu(hu, root, min_slices=min_slices, check_hu=check_hu)
    return CTVolume(hu=hu, affine=affine, path=str(root))


def _to_hu(f: Path, ds, arr: np.ndarray) -> np.ndarray:
    """Stored values -> HU with RescaleSlope / RescaleIntercept.

    Without both tags the values are taken as HU only when they already look like HU
    (some negative values: air). Unsigned-looking raw values (all >= 0, as a scanner
    stores them with intercept -1024) cannot be converted: that is an error.
    """
    arr = arr.astype(np.float32)
    has_slope, has_icpt = "RescaleSlope" in ds, "RescaleIntercept" in ds
    if has_slope or has_icpt:
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        icpt = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        return arr * np.float32(slope) + np.float32(icpt)
    if arr.size and float(arr.min()) >= 0:
        raise InputError(f, "no RescaleSlope / RescaleIntercept and the stored values are all "
                            ">= 0: raw scanner values, not HU; cannot convert to Hounsfield units")
    return arr


def _looks_like_dicom(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
        return head[128:132] == b"DICM"
    except OSError:
        return False


# ----------------------------------------------------------------------------- shared


def to_lps(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute / flip the axes of `data` so they run L, P, S; return (array, its affine)."""
    from nibabel.orientations import (apply_orientation, axcodes2ornt, inv_ornt_aff,
                                      io_orientation, ornt_transform)

    ornt = io_orientation(affine)
    xform = ornt_transform(ornt, axcodes2ornt(("L", "P", "S")))
    out = np.ascontiguousarray(apply_orientation(data, xform), dtype=np.float32)
    new_affine = affine @ inv_ornt_aff(xform, data.shape[:3])
    return out, np.asarray(new_affine, dtype=np.float64)


def validate_hu(hu: np.ndarray, path, *, min_slices: int = MIN_SLICES,
                check_hu: bool = True) -> None:
    """Raise InputError unless `hu` is a 3D (X, Y, Z) volume of finite CT values in HU."""
    if hu.ndim != 3 or min(hu.shape) == 1:
        raise InputError(path, f"not a 3D volume: a 2D image of shape {tuple(hu.shape)}")
    if hu.shape[2] < min_slices:
        raise InputError(path, f"only {hu.shape[2]} slices; at least {min_slices} slices "
                               "are needed")
    bad = int(np.count_nonzero(~np.isfinite(hu)))
    if bad:
        n_nan = int(np.count_nonzero(np.isnan(hu)))
        raise InputError(path, f"{bad} voxels are NaN or infinite ({n_nan} NaN, "
                               f"{bad - n_nan} infinite)")
    if check_hu:
        air = float(np.count_nonzero(hu < AIR_HU)) / hu.size
        bone = float(np.count_nonzero(hu > BONE_HU)) / hu.size
        if air < MIN_AIR_FRACTION or bone < MIN_BONE_FRACTION:
            what = ("no air near -1000 HU and no bone" if air < MIN_AIR_FRACTION
                    and bone < MIN_BONE_FRACTION else
                    "no air near -1000 HU" if air < MIN_AIR_FRACTION else "no bone")
            raise InputError(path, f"{what} (values {float(hu.min()):.0f} to "
                                   f"{float(hu.max()):.0f}; {100 * air:.2f}% below "
                                   f"{AIR_HU:.0f} HU, {100 * bone:.2f}% above {BONE_HU:.0f} HU): "
                                   "not a head CT in Hounsfield units (an MRI?)")


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    msg = msg[:200]
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
