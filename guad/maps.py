"""Saved per-scan images for the case viewer: input, each model's reconstruction, signed maps.

Layout (one folder per scan, NIfTI int16, gzip with a fixed mtime: same content, same bytes):

    <root>/<scan_id>/input_hu.nii.gz    HU, the scan on the display grid, unmasked (optional)
                     cmm_recon.nii.gz   HU, CMM's reconstruction, on CMM's own grid
                     cmm_map.nii.gz     HU (scl_slope 0.1), CMM's cleaned signed anomaly map
                     fgm_recon.nii.gz   ...
                     fgm_map.nii.gz     ...

The display grid is the FGM grid (256 x 256 x 32). Each model's volumes stay on that model's
own grid (48 x 48 x 16 for cpu-cmm, ...): every grid covers the same box (guad.preprocess
fixes one field of view and 32 slices), so `CaseMaps.display()` resamples them onto the display
grid by box alignment: linear for reconstructions, nearest for maps (map values stay exact).
Native grids keep a case at about 26 KB (the cpu configs) instead of several MB, which lets the demo
ship maps for hundreds of scans.

`input_hu` may be left out (`save_case(..., with_input=False)`): a synthetic scan's input is
remade from its seed when the case is opened (`load_case(..., input_hu=..., affine=...)`).
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
MAP_SCALE = 0.1  # signed maps are stored as int16 tenths of a HU


@dataclass
class CaseMaps:
    affine: np.ndarray  # (4, 4) NIfTI affine of the display grid
    input_hu: np.ndarray  # (X, Y, Z) float32 on the display grid
    recon: dict[str, np.ndarray] = field(default_factory=dict)  # model -> HU, own grid
    signed: dict[str, np.ndarray] = field(default_factory=dict)  # model -> HU, own grid
    _display: "CaseMaps | None" = field(default=None, repr=False, compare=False)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    def display(self) -> "CaseMaps":
        """Every volume on the input's (display) grid; computed once, then reused."""
        shape = tuple(self.input_hu.shape)
        if all(tuple(v.shape) == shape for v in (*self.recon.values(), *self.signed.values())):
            return self
        if self._display is None:
            self._display = CaseMaps(
                self.affine, self.input_hu,
                {m: resample_to(v, shape) for m, v in self.recon.items()},
                {m: resample_to(v, shape, nearest=True) for m, v in self.signed.items()})
        return self._display


def resample_to(vol: np.ndarray, shape: tuple[int, int, int], nearest: bool = False) -> np.ndarray:
    """Resize a (X, Y, Z) volume covering the same box to `shape` (voxel boxes aligned)."""
    if tuple(vol.shape) == tuple(shape):
        return np.asarray(vol, np.float32)
    t = torch.from_numpy(np.ascontiguousarray(vol, dtype=np.float32))[None, None]
    if nearest:
        out = F.interpolate(t, size=tuple(shape), mode="nearest-exact")
    else:
        out = F.interpolate(t, size=tuple(shape), mode="trilinear", align_corners=False)
    return out[0, 0].numpy()


def grid_affine(display_affine: np.ndarray, display_shape, shape) -> np.ndarray:
    """NIfTI affine of a grid of `shape` covering the same box as the display grid."""
    r = np.asarray(display_shape, float) / np.asarray(shape, float)
    to_display = np.eye(4)
    to_display[:3, :3] = np.diag(r)
    to_display[:3, 3] = (r - 1) / 2.0
    return np.asarray(display_affine, np.float64) @ to_display


def _write(path: Path, vol: np.ndarray, affine: np.ndarray, scale: float = 1.0) -> None:
    """int16 NIfTI (value = stored * scale), gzip with mtime 0, written atomically."""
    q = np.clip(np.round(np.asarray(vol, np.float32) / scale), -32768, 32767).astype(np.int16)
    img = nib.Nifti1Image(q, affine)
    img.header.set_slope_inter(scale, 0.0)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(img.to_bytes())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _read(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32), np.float32)


def save_case(root: str | Path, scan_id: str, maps: CaseMaps, with_input: bool = True) -> Path:
    folder = Path(root) / scan_id
    folder.mkdir(parents=True, exist_ok=True)
    shape = maps.input_hu.shape
    if with_input:
        _write(folder / "input_hu.nii.gz", maps.input_hu, maps.affine)
    for m, v in maps.recon.items():
        _write(folder / f"{m}_recon.nii.gz", v, grid_affine(maps.affine, shape, v.shape))
    for m, v in maps.signed.items():
        _write(folder / f"{m}_map.nii.gz", v, grid_affine(maps.affine, shape, v.shape), MAP_SCALE)
    return folder


def has_case(root: str | Path, scan_id: str) -> bool:
    """Both models' maps are saved (the input may have to be remade, see has_input)."""
    folder = Path(root) / scan_id
    return all((folder / f"{m}_map.nii.gz").exists() for m in MODELS)


def has_input(root: str | Path, scan_id: str) -> bool:
    return (Path(root) / scan_id / "input_hu.nii.gz").exists()


def load_case(root: str | Path, scan_id: str, input_hu: np.ndarray | None = None,
              affine: np.ndarray | None = None) -> CaseMaps:
    """A saved case. Without a saved input, pass the remade one (`input_hu`, `affine`)."""
    folder = Path(root) / scan_id
    if (folder / "input_hu.nii.gz").exists():
        img = nib.load(str(folder / "input_hu.nii.gz"))
        input_hu, affine = np.asarray(img.get_fdata(dtype=np.float32)), img.affine
    elif input_hu is None or affine is None:
        raise FileNotFoundError(f"{folder}: no saved input_hu.nii.gz; remake the input and pass it")
    maps = CaseMaps(affine=np.asarray(affine), input_hu=np.asarray(input_hu, np.float32))
    for m in MODELS:
        r, s = folder / f"{m}_recon.nii.gz", folder / f"{m}_map.nii.gz"
        if r.exists():
            maps.recon[m] = _read(r)
        if s.exists():
            maps.signed[m] = _read(s)
    return maps
