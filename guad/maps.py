"""Saved per-scan images for the case viewer: input, each model's reconstruction, signed maps.

Layout (one folder per scan, NIfTI, all on ONE display grid so panes share slice indices):

    <root>/<scan_id>/input_hu.nii.gz    float32 HU, the scan resampled to the grid, unmasked
                     cmm_recon.nii.gz   float32 HU, CMM's reconstruction (inside the brain)
                     cmm_map.nii.gz     float32 HU, CMM's cleaned signed anomaly map
                     fgm_recon.nii.gz   ...
                     fgm_map.nii.gz     ...

The display grid is the FGM grid (256 x 256 x 32 in the paper's configuration). CMM's grid
covers the same field of view and slices (guad.preprocess), so its volumes are resampled onto it
(linear for images, nearest for maps, which keeps map values exact).
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

MODELS = ("cmm", "fgm")


@dataclass
class CaseMaps:
    affine: np.ndarray  # (4, 4) NIfTI affine of the display grid
    input_hu: np.ndarray  # (X, Y, Z) float32
    recon: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (X, Y, Z) HU
    signed: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (X, Y, Z) HU

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))


def resample_to(vol: np.ndarray, shape: tuple[int, int, int], nearest: bool = False) -> np.ndarray:
    """Resize a (X, Y, Z) volume covering the same box to `shape` (voxel centres aligned)."""
    if tuple(vol.shape) == tuple(shape):
        return np.asarray(vol, np.float32)
    t = torch.from_numpy(np.ascontiguousarray(vol, dtype=np.float32))[None, None]
    if nearest:
        out = F.interpolate(t, size=tuple(shape), mode="nearest-exact")
    else:
        out = F.interpolate(t, size=tuple(shape), mode="trilinear", align_corners=False)
    return out[0, 0].numpy()


def _write(path: Path, vol: np.ndarray, affine: np.ndarray) -> None:
    """Write NIfTI gzip with mtime 0 (same content, same bytes), atomically."""
    img = nib.Nifti1Image(np.asarray(vol, np.float32), affine)
    raw = img.to_bytes()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def save_case(root: str | Path, scan_id: str, maps: CaseMaps) -> Path:
    folder = Path(root) / scan_id
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "input_hu.nii.gz", maps.input_hu, maps.affine)
    for m in maps.recon:
        _write(folder / f"{m}_recon.nii.gz", maps.recon[m], maps.affine)
    for m in maps.signed:
        _write(folder / f"{m}_map.nii.gz", maps.signed[m], maps.affine)
    return folder


def has_case(root: str | Path, scan_id: str) -> bool:
    folder = Path(root) / scan_id
    return (folder / "input_hu.nii.gz").exists() and all((folder / f"{m}_map.nii.gz").exists() for m in MODELS)


def load_case(root: str | Path, scan_id: str) -> CaseMaps:
    folder = Path(root) / scan_id
    img = nib.load(str(folder / "input_hu.nii.gz"))
    maps = CaseMaps(affine=img.affine, input_hu=np.asarray(img.dataobj, np.float32))
    for m in MODELS:
        r, s = folder / f"{m}_recon.nii.gz", folder / f"{m}_map.nii.gz"
        if r.exists():
            maps.recon[m] = np.asarray(nib.load(str(r)).dataobj, np.float32)
        if s.exists():
            maps.signed[m] = np.asarray(nib.load(str(s)).dataobj, np.float32)
    return maps
