"""Pre-processing as the paper fixes it: brain extraction, 32 slices, 96 x 96 x 32 (CMM) and
256 x 256 x 32 (FGM), HU window [-10, 90] -> [0, 1], and FGM's anatomy label map.

    pp = preprocess_ct(read_ct(path))
    pp.cmm (96, 96, 32), pp.fgm (256, 256, 32), pp.anatomy, pp.brain_mask, ...

Geometry (our choices; the paper fixes only the sizes):
- Brain extraction runs on the input grid (`guad.preprocess.brain`).
- Depth: 5 mm slices (the paper's data were 5 mm; thinner inputs are averaged over whole
  groups of slices first, a documented deviation for sites that send thin slices), 32 slices
  centred on the brain's bounding box (pad with "outside" where the scan ends). A 5 mm input
  is taken slice for slice, never interpolated.
- In-plane: a FIXED physical field of view (`FOV_MM` = 200 mm) centred on the brain's
  bounding box, so every site's scans share one scale: FGM pixels 200/256 = 0.78 mm, CMM
  pixels 200/96 = 2.08 mm. Axes follow the input's LPS voxel axes (a gantry tilt stays in
  the affine). Inputs with pixels under half the target are block-averaged first.
- Resampling is one trilinear `torch.nn.functional.grid_sample` pass onto the FGM grid, as a
  normalised interpolation (image*mask and mask interpolated, divided): the model grids'
  masks are mask >= 0.5, and the image is 0 outside them, so skull never leaks into the
  brain's edge voxels. CMM is the area average (`adaptive_avg_pool3d`) of the FGM grid,
  256 -> 96, again normalised by the mask.
- Then the HU window: clip((HU + 10) / 100, 0, 1) (MONAI `ScaleIntensityRange`), times the
  model grid's mask.
- The anatomy map is made on the FGM grid from the FGM image (`guad.preprocess.anatomy`).
- `cmm_affine` / `fgm_affine` map the model grids to the input's world mm (NIfTI RAS+), so
  maps written with them overlay the input scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from guad.errors import InputError
from guad.preprocess.anatomy import anatomy_labels
from guad.preprocess.brain import extract_brain

WINDOW_HU = (-10.0, 90.0)
CMM_SHAPE = (96, 96, 32)
FGM_SHAPE = (256, 256, 32)
FOV_MM = 200.0
SLICE_MM = 5.0
MIN_BRAIN_ML = 50.0


@dataclass
class Preprocessed:
    """What the models see. Arrays are (X, Y, Z) in LPS."""

    brain_mask: np.ndarray   # bool, input grid
    cmm: np.ndarray          # float32 (96, 96, 32) in [0, 1], 0 outside the brain
    fgm: np.ndarray          # float32 (256, 256, 32) in [0, 1], 0 outside the brain
    anatomy: np.ndarray      # uint8 (256, 256, 32): 0 outside, 1 parenchyma, 2 ventricles,
                             #   3 subarachnoid CSF, 4 brain boundary
    cmm_mask: np.ndarray     # bool (96, 96, 32)
    fgm_mask: np.ndarray     # bool (256, 256, 32)
    cmm_affine: np.ndarray   # (4, 4) NIfTI affine of the CMM grid
    fgm_affine: np.ndarray   # (4, 4) NIfTI affine of the FGM grid


def window(hu: np.ndarray) -> np.ndarray:
    """HU window [-10, 90] -> [0, 1], clipped (one model unit = 100 HU)."""
    from monai.transforms import ScaleIntensityRange

    scale = ScaleIntensityRange(a_min=WINDOW_HU[0], a_max=WINDOW_HU[1], b_min=0.0, b_max=1.0,
                                clip=True)
    out = scale(np.asarray(hu, dtype=np.float32))
    return np.asarray(out.array if hasattr(out, "array") else out, dtype=np.float32)


def model_to_hu(x: np.ndarray) -> np.ndarray:
    """Inverse of `window` inside the window: model units -> HU."""
    return np.asarray(x, np.float32) * (WINDOW_HU[1] - WINDOW_HU[0]) + WINDOW_HU[0]


def preprocess_ct(ct, *, brain_mask: np.ndarray | None = None, fov_mm: float = FOV_MM,
                  slice_mm: float = SLICE_MM) -> Preprocessed:
    """Brain mask, CMM / FGM inputs and the anatomy map of a `CTVolume` (see module doc)."""
    hu = np.asarray(ct.hu, dtype=np.float32)
    spacing = np.asarray(ct.spacing, dtype=np.float64)
    mask = extract_brain(hu, spacing) if brain_mask is None else np.asarray(brain_mask, bool)
    brain_ml = float(mask.sum()) * float(np.prod(spacing)) / 1000.0
    if brain_ml < MIN_BRAIN_ML:
        raise InputError(ct.path, f"no brain found ({brain_ml:.0f} mL inside a skull; need "
                                  f"{MIN_BRAIN_ML:.0f} mL): not a head CT, or the skull is "
                                  "missing from the scan")

    # Grid of the FGM volume in input voxel coordinates: index = start + o * step.
    centre = np.array([_middle(mask.any(axis=tuple(b for b in range(3) if b != a)))
                       for a in range(3)])              # brain bounding-box centre (voxels)
    step = np.array([fov_mm / FGM_SHAPE[0] / spacing[0], fov_mm / FGM_SHAPE[1] / spacing[1],
                     slice_mm / spacing[2]])
    if abs(step[2] - round(step[2])) < 0.02:
        step[2] = round(step[2])
    start = centre - (np.array(FGM_SHAPE) - 1) / 2.0 * step
    if step[2] == round(step[2]):                 # land on input slices: no z interpolation
        start[2] = np.round(start[2])

    # Block-average where the target is much coarser than the input (anti-aliasing).
    k = np.array([int(step[0]) if step[0] >= 2 else 1, int(step[1]) if step[1] >= 2 else 1,
                  int(step[2]) if step[2] >= 1.5 else 1])
    m = torch.from_numpy(mask)
    x = torch.empty((1, 2) + hu.shape, dtype=torch.float32)            # (1, 2, X, Y, Z)
    torch.mul(torch.from_numpy(hu), m, out=x[0, 0])                   # HU * mask
    x[0, 1] = m
    if (k > 1).any():
        x = F.avg_pool3d(x, kernel_size=tuple(int(v) for v in k), stride=tuple(int(v) for v in k))
    size = np.array(x.shape[2:])
    # pooled index p covers input indices k*p .. k*p + k - 1 (centre k*p + (k-1)/2)
    coords = []
    for a in range(3):
        inp = start[a] + np.arange(FGM_SHAPE[a]) * step[a]
        pooled = (inp - (k[a] - 1) / 2.0) / k[a]
        coords.append(torch.from_numpy(2.0 * pooled / max(size[a] - 1, 1) - 1.0).float())
    gx, gy, gz = torch.meshgrid(*coords, indexing="ij")
    grid = torch.stack([gz, gy, gx], dim=-1)[None]      # grid_sample wants (W, H, D) order
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    # (1, 2, 256, 256, 32): interpolated HU*mask and mask
    fgm_mask, fgm_hu = _normalise(out)
    cmm_mask, cmm_hu = _normalise(F.adaptive_avg_pool3d(out, CMM_SHAPE))   # (1, 2, 96, 96, 32)
    fgm = window(fgm_hu) * fgm_mask
    cmm = window(cmm_hu) * cmm_mask

    fgm_to_input = np.eye(4)
    fgm_to_input[:3, :3] = np.diag(step)
    fgm_to_input[:3, 3] = start
    r = np.array(FGM_SHAPE, float) / np.array(CMM_SHAPE, float)  # CMM voxel -> FGM index
    cmm_to_fgm = np.eye(4)
    cmm_to_fgm[:3, :3] = np.diag(r)
    cmm_to_fgm[:3, 3] = (r - 1) / 2.0
    fgm_affine = np.asarray(ct.affine, np.float64) @ fgm_to_input
    cmm_affine = fgm_affine @ cmm_to_fgm

    fgm_spacing = np.linalg.norm(fgm_affine[:3, :3], axis=0)
    anatomy = anatomy_labels(fgm_hu, fgm_mask, fgm_spacing)
    return Preprocessed(brain_mask=mask, cmm=cmm.astype(np.float32), fgm=fgm.astype(np.float32),
                        anatomy=anatomy, cmm_mask=cmm_mask, fgm_mask=fgm_mask,
                        cmm_affine=cmm_affine, fgm_affine=fgm_affine)


def _middle(profile: np.ndarray) -> float:
    idx = np.flatnonzero(profile)
    return (idx[0] + idx[-1]) / 2.0


def _normalise(out: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(1, 2, ...) interpolated (HU*mask, mask) -> (mask >= 0.5, HU inside it, 0 outside)."""
    num, den = out[0, 0], out[0, 1]
    keep = den >= 0.5
    hu = torch.where(keep, num / den.clamp_min(1e-6), torch.zeros(()))
    return keep.numpy(), hu.numpy()
