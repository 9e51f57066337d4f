"""Reading CT: a NIfTI file or a folder holding one DICOM series -> `CTVolume` (float32 HU, LPS).

    from guad.io import read_ct
    ct = read_ct("scan.nii.gz")      # or a folder of DICOM slices
    ct.hu, ct.affine, ct.spacing, ct.path

Every bad input raises `guad.errors.InputError("<path>: <problem>")`.
"""

from guad.io.ct import (
    CTVolume,
    read_ct,
    read_dicom_series,
    read_nifti,
    to_lps,
    validate_hu,
)

__all__ = ["CTVolume", "read_ct", "read_nifti", "read_dicom_series", "to_lps", "validate_hu"]
