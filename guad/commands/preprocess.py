"""Read one head CT (a NIfTI file or a folder holding one DICOM series) and write what the
models will see, so it can be looked at in any NIfTI viewer:

  brain_mask.nii.gz  uint8 brain mask on the input grid (LPS), 1 = kept
  cmm.nii.gz         float32 96 x 96 x 32 in [0, 1] (HU window [-10, 90]), coarse model input
  fgm.nii.gz         float32 256 x 256 x 32 in [0, 1], fine model input
  anatomy.nii.gz     uint8 256 x 256 x 32: 0 outside, 1 parenchyma, 2 ventricles,
                     3 subarachnoid CSF, 4 brain boundary

Every file carries its world affine, so all four overlay the input scan.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HELP = "brain-extract and resize one CT; write the mask, model inputs and anatomy map"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT",
                        help="NIfTI file (.nii, .nii.gz) or folder holding one DICOM series")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")


def run(args: argparse.Namespace) -> int:
    import nibabel as nib

    from guad.io import read_ct
    from guad.preprocess import LABELS, preprocess_ct

    t0 = time.perf_counter()
    ct = read_ct(args.input)
    pp = preprocess_ct(ct)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "brain_mask.nii.gz": (pp.brain_mask.astype(np.uint8), ct.affine),
        "cmm.nii.gz": (pp.cmm.astype(np.float32), pp.cmm_affine),
        "fgm.nii.gz": (pp.fgm.astype(np.float32), pp.fgm_affine),
        "anatomy.nii.gz": (pp.anatomy.astype(np.uint8), pp.fgm_affine),
    }
    for name, (arr, affine) in files.items():
        img = nib.Nifti1Image(arr, affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        nib.save(img, str(out / name))
    brain_ml = float(pp.brain_mask.sum()) * float(np.prod(ct.spacing)) / 1000.0
    counts = np.bincount(pp.anatomy.ravel(), minlength=len(LABELS))
    vox_ml = float(np.prod(np.linalg.norm(pp.fgm_affine[:3, :3], axis=0))) / 1000.0
    print(f"{ct.path}: {ct.hu.shape[0]}x{ct.hu.shape[1]}x{ct.hu.shape[2]} at "
          f"{' x '.join(f'{s:.2f}' for s in ct.spacing)} mm; brain {brain_ml:.0f} mL")
    print("anatomy: " + ", ".join(f"{LABELS[i]} {counts[i] * vox_ml:.1f} mL"
                                  for i in range(1, len(LABELS))))
    print(f"wrote {', '.join(files)} to {out} in {time.perf_counter() - t0:.1f} s")
    return 0
