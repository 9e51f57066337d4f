"""FGM's anatomy label map, made from the scan itself.

Labels (uint8): 0 outside the brain, 1 parenchyma, 2 ventricles, 3 subarachnoid CSF (and any
other CSF-density voxel that is not ventricle), 4 brain boundary (a thin band at the mask's
edge; it wins over the others).

- CSF: inside the brain mask, HU smoothed in-plane (a box about 2 mm wide, inside the mask
  only) at least 10 HU below this scan's parenchyma (the median of brain voxels in
  [15, 50] HU, about 31-34 HU), i.e. about 21-24 HU: "more CSF (0-8 HU) than tissue".
  Relative to the scan's own parenchyma so a scanner's HU offset does not move it.
- Ventricles: CSF more than 10 mm inside the brain mask (3D distance in mm, computed at
  about 2 mm in-plane), in connected pieces of at least 1 mL (lateral, third and fourth
  ventricles), plus the CSF one voxel around them (in-plane, more than 5 mm deep), minus
  the places where deep CSF is cistern or fissure rather than ventricle, by position
  relative to the brain's bounding-box centre (`cistern_zones`: quadrigeminal / ambient /
  superior cerebellar cisterns, Sylvian / insular cisterns, the interhemispheric fissure
  above the corpus callosum). The rest of the CSF is subarachnoid (sulci, fissures,
  cisterns). Ventricles enlarged by hydrocephalus stay deep and grow; sulci stay near the
  surface. Connectivity to the surface does not separate them on 5 mm slices (ventricles
  and cisterns touch through the foramina and the choroidal fissure), hence the zones.
- Boundary: mask voxels within `BOUNDARY_MM` of the outside (in-plane).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

OUTSIDE, PARENCHYMA, VENTRICLES, SUBARACHNOID, BOUNDARY = 0, 1, 2, 3, 4
LABELS = {OUTSIDE: "outside", PARENCHYMA: "parenchyma", VENTRICLES: "ventricles",
          SUBARACHNOID: "subarachnoid CSF", BOUNDARY: "brain boundary"}
CSF_BELOW = 12.0          # CSF: at least this many HU below the scan's parenchyma
CSF_MIN_HU = -30.0
SMOOTH_MM = 1.0
VENTRICLE_DEPTH_MM = 10.0
VENTRICLE_MIN_ML = 1.0
RIM_BELOW = 12.0          # ventricle rim: CSF-density voxels next to the deep pieces
RIM_DEPTH_MM = 5.0
BOUNDARY_MM = 1.5


def parenchyma_hu(hu: np.ndarray, mask: np.ndarray) -> float:
    """This scan's typical brain-tissue HU: the median of mask voxels in [15, 50] HU."""
    v = hu[mask & (hu > 15) & (hu < 50)]
    return float(np.median(v)) if v.size else 32.0


def smooth_in_mask(hu: np.ndarray, mask: np.ndarray, spacing) -> np.ndarray:
    """Box-smoothed HU (about SMOOTH_MM * 2 wide, in-plane) using only voxels inside `mask`
    (normalised convolution), so skull and air never bleed into the brain's edge."""
    r = (_odd(SMOOTH_MM * 2 / float(spacing[0])) // 2, _odd(SMOOTH_MM * 2 / float(spacing[1])) // 2)
    num = _box(np.where(mask, hu, 0).astype(np.float32), r)
    den = _box(mask.astype(np.float32), r)
    return num / np.maximum(den, 1e-3)


def _box(a: np.ndarray, r: tuple[int, int]) -> np.ndarray:
    """Sum over a (2 r0 + 1) x (2 r1 + 1) in-plane box, zero outside the array."""
    for axis, rad in enumerate(r):
        src, a = a, a.copy()
        n = src.shape[axis]
        for d in range(1, min(rad, n - 1) + 1):
            lo = [slice(None)] * src.ndim
            hi = [slice(None)] * src.ndim
            lo[axis], hi[axis] = slice(0, n - d), slice(d, n)
            a[tuple(lo)] += src[tuple(hi)]
            a[tuple(hi)] += src[tuple(lo)]
    return a


def csf_mask(sm: np.ndarray, mask: np.ndarray, par: float) -> np.ndarray:
    """CSF-density voxels inside `mask`: smoothed HU in [CSF_MIN_HU, par - CSF_BELOW]."""
    return mask & (sm <= par - CSF_BELOW) & (sm >= CSF_MIN_HU)


def _odd(x: float) -> int:
    return max(1, 2 * int(round((x - 1) / 2)) + 1)


def ventricle_mask(sm: np.ndarray, mask: np.ndarray, par: float, spacing) -> np.ndarray:
    """Deep CSF pieces (> VENTRICLE_DEPTH_MM inside, >= VENTRICLE_MIN_ML) plus their
    rim (one in-plane voxel, HU up to par - RIM_BELOW, > RIM_DEPTH_MM deep), outside
    `cistern_zones`."""
    sp = tuple(float(s) for s in spacing)
    depth = _depth_mm(mask, sp)
    deep = csf_mask(sm, mask, par) & (depth > VENTRICLE_DEPTH_MM)
    lab, n = ndi.label(deep)
    if n == 0:
        return deep
    sizes = np.bincount(lab.ravel()) * float(np.prod(sp)) / 1000.0   # mL
    sizes[0] = 0
    zones = cistern_zones(mask, sp)
    core = np.isin(lab, np.flatnonzero(sizes >= VENTRICLE_MIN_ML)) & ~zones
    plane = np.zeros((3, 3, 3), bool)
    plane[:, :, 1] = ndi.generate_binary_structure(2, 1)
    rim = ndi.binary_dilation(core, plane) & (sm <= par - RIM_BELOW) & (depth > RIM_DEPTH_MM)
    return (core | rim) & ~zones


def cistern_zones(mask: np.ndarray, sp: tuple) -> np.ndarray:
    """Where deep CSF is cistern or fissure, not ventricle, by position relative to the
    centre of the brain mask's bounding box (mm; +y posterior, +z superior in LPS):
    - posterior midline above the 4th ventricle (quadrigeminal, ambient, superior cerebellar
      cisterns): |dx| < 12, dy > 12, -22 < dz < -2, and beside the midbrain (ambient
      cisterns): 9 < |dx| < 25, dy > 5, -30 < dz < -8;
    - lateral, anterior and low (Sylvian / insular cisterns): |dx| > 20, dy < -5, dz < 0,
      and |dx| > 36, dy < 10, dz < 10;
    - midline high (interhemispheric fissure above the corpus callosum): |dx| < 6, dz > 25.
    Broadcast (X, Y, Z) boolean."""
    idx = [np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    d = [(np.arange(n) - (i[0] + i[-1]) / 2.0) * s if i.size else np.zeros(n)
         for n, i, s in zip(mask.shape, idx, sp)]
    x = np.abs(d[0])[:, None, None]
    y = d[1][None, :, None]
    z = d[2][None, None, :]
    return (((x < 12) & (y > 12) & (z > -22) & (z < -2)) | ((x > 20) & (y < -5) & (z < 0))
            | ((x > 9) & (x < 25) & (y > 5) & (z > -30) & (z < -8))
            | ((x > 36) & (y < 10) & (z < 10)) | ((x < 6) & (z > 25)))


def _depth_mm(mask: np.ndarray, sp: tuple) -> np.ndarray:
    """Distance (mm) of each mask voxel to the outside, computed at about 2 mm in-plane."""
    s = max(1, int(round(2.0 / min(sp[0], sp[1]))))
    if s == 1:
        return ndi.distance_transform_edt(mask, sampling=sp)
    coarse = ndi.distance_transform_edt(mask[::s, ::s], sampling=(sp[0] * s, sp[1] * s, sp[2]))
    full = np.repeat(np.repeat(coarse, s, axis=0), s, axis=1)[: mask.shape[0], : mask.shape[1]]
    return np.where(mask, full, 0.0)


def boundary_band(mask: np.ndarray, spacing) -> np.ndarray:
    """Mask voxels within BOUNDARY_MM (in-plane) of the outside."""
    it = max(1, int(round(BOUNDARY_MM / min(float(spacing[0]), float(spacing[1])))))
    plane = np.zeros((3, 3, 3), bool)
    plane[:, :, 1] = ndi.generate_binary_structure(2, 1)
    return mask & ~ndi.binary_erosion(mask, plane, iterations=it, border_value=0)


def anatomy_labels(hu: np.ndarray, mask: np.ndarray, spacing) -> np.ndarray:
    """uint8 label map (see module docstring) of `hu` (HU, (X, Y, Z)) inside `mask`."""
    mask = np.asarray(mask, bool)
    labels = np.zeros(mask.shape, np.uint8)
    labels[mask] = PARENCHYMA
    par = parenchyma_hu(hu, mask)
    sm = smooth_in_mask(hu, mask, spacing)
    labels[csf_mask(sm, mask, par)] = SUBARACHNOID
    labels[ventricle_mask(sm, mask, par, spacing)] = VENTRICLES
    labels[boundary_band(mask, spacing)] = BOUNDARY
    return labels
