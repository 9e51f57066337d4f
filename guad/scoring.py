"""The paper's anomaly score: from a difference map to one number per scan and model.

    diff = input - reconstruction, in HU (model units x 100, see docs/architecture.md)
    1. voxels with |diff| < min_abs_hu are set to 0     (10 HU for CMM, 7.5 HU for FGM)
    2. median filter, radius 1 (3x3x3), applied twice   (MONAI's MedianSmooth, the paper's name)
    3. connected objects (26-connected, either sign) of fewer than min_voxels voxels removed
    4. score = sum of |diff| over what is left

The cleaned map keeps its sign: positive = hyperdense (input brighter than the normal-looking
reconstruction: blood, calcification), negative = hypodense (infarct, edema, CSF excess).
The viewer draws it red/blue. Nothing here knows about networks or samplers.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import MedianSmooth
from scipy import ndimage

# Paper thresholds, in HU.
MIN_ABS_HU = {"cmm": 10.0, "fgm": 7.5}
MIN_VOXELS = 75
HU_PER_UNIT = 100.0  # the [-10, 90] HU window maps to [0, 1]

MEDIAN_RADIUS = 1  # voxels, every axis: the paper's 3x3x3 window
_FULL_3D = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity


def difference_map_hu(x: np.ndarray, recon: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(X, Y, Z) input and reconstruction in model units [0, 1] -> float32 difference in HU.

    Voxels outside `mask` (the brain on the model grid) are set to 0: the models only see
    the extracted brain, so anything outside it is not an anomaly of the scan.
    """
    diff = (np.asarray(x, np.float32) - np.asarray(recon, np.float32)) * HU_PER_UNIT
    if mask is not None:
        diff = np.where(mask, diff, 0.0).astype(np.float32)
    return diff


def anomaly_score(
    diff_hu: np.ndarray, min_abs_hu: float, min_voxels: int = MIN_VOXELS,
    median_radius: int | tuple[int, int, int] = MEDIAN_RADIUS,
) -> tuple[float, np.ndarray]:
    """Score a signed difference map (input - reconstruction, HU), as the paper does.

    diff_hu: (X, Y, Z) float. Returns (score, cleaned_signed_map (X, Y, Z) float32).
    An object of exactly `min_voxels` voxels is kept ("objects under 75 voxels removed").
    median_radius: the median window's radius in voxels, one int or one per axis (X, Y, Z);
    the paper's is 1. A radius of 0 on an axis does not filter along it; 0 everywhere skips
    the median step.
    """
    diff = np.asarray(diff_hu, dtype=np.float32)
    if diff.ndim != 3:
        raise ValueError(f"anomaly_score needs a 3D difference map, got shape {diff.shape}")
    if not np.isfinite(diff).all():
        raise ValueError("anomaly_score: the difference map holds NaN or infinite values")

    kept = np.where(np.abs(diff) >= min_abs_hu, diff, 0.0).astype(np.float32)
    # MedianSmooth takes channel-first tensors: (1, X, Y, Z). Border voxels are padded by
    # replication (MONAI's choice); maps are zero outside the brain, so the border is empty.
    radius = (median_radius,) * 3 if np.isscalar(median_radius) else tuple(int(r) for r in median_radius)
    if len(radius) != 3 or min(radius) < 0:
        raise ValueError(f"anomaly_score: median_radius must be >= 0, one or three values, got {median_radius}")
    if any(radius):
        median = MedianSmooth(radius=radius)
        t = median(median(torch.from_numpy(kept)[None]))
        smoothed = t[0].numpy() if isinstance(t, torch.Tensor) else np.asarray(t)[0]
    else:
        smoothed = kept
    smoothed = np.ascontiguousarray(smoothed, dtype=np.float32)

    labels, n = ndimage.label(smoothed != 0, structure=_FULL_3D)
    if n:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_voxels
        small[0] = True  # background stays empty
        smoothed[small[labels]] = 0.0
    return float(np.abs(smoothed).sum(dtype=np.float64)), smoothed
