"""What the case viewer draws, as pure numpy: slices in radiological convention, windows, overlays.

Volumes are (X, Y, Z) in LPS (docs/architecture.md). Display convention, as reading tools do:
    axial     rows: anterior -> posterior,  columns: patient's right -> left  (radiological)
    coronal   rows: superior -> inferior,   columns: patient's right -> left
    sagittal  rows: superior -> inferior,   columns: anterior -> posterior
so the patient's left is on the image's right in axial and coronal views. Slices through the
5 mm axis are stretched by the voxel aspect so anatomy is not squashed.
No Streamlit here: the page calls these and shows the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# name -> (width, level) in HU, as OHIF and friends ship them
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (80.0, 40.0),
    "subdural": (200.0, 75.0),
    "stroke": (40.0, 40.0),
    "bone": (2500.0, 480.0),
}

PLANES = ("axial", "coronal", "sagittal")

# plane -> (label at image left, right, top, bottom)
ORIENTATION_LABELS: dict[str, tuple[str, str, str, str]] = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}


def n_slices(shape: tuple[int, int, int], plane: str) -> int:
    """Number of slices of a (X, Y, Z) volume in a plane."""
    return shape[{"axial": 2, "coronal": 1, "sagittal": 0}[_check_plane(plane)]]


def _check_plane(plane: str) -> str:
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    return plane


def take_slice(vol: np.ndarray, plane: str, index: int) -> np.ndarray:
    """(X, Y, Z) LPS volume -> 2D (rows, cols) array in display orientation (see module doc)."""
    _check_plane(plane)
    index = int(np.clip(index, 0, n_slices(vol.shape, plane) - 1))
    if plane == "axial":
        return vol[:, :, index].T  # rows Y (A->P), cols X (R->L)
    if plane == "coronal":
        return vol[:, index, :].T[::-1]  # rows Z (S->I), cols X (R->L)
    return vol[index, :, :].T[::-1]  # rows Z (S->I), cols Y (A->P)


def row_stretch(spacing: tuple[float, float, float], plane: str) -> float:
    """How many display rows one slice row takes, so pixels are square in mm."""
    sx, sy, sz = (float(s) for s in spacing)
    if plane == "axial":
        return sy / sx
    return sz / (sx if plane == "coronal" else sy)


def stretch_rows(img: np.ndarray, factor: float) -> np.ndarray:
    """Repeat rows (nearest neighbour) so a 5 mm axis shows at its real height."""
    if abs(factor - 1.0) < 1e-3:
        return img
    n = img.shape[0]
    idx = np.minimum((np.arange(int(round(n * factor))) / factor).astype(int), n - 1)
    return img[idx]


def apply_window(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """HU -> uint8 grey levels for window (width, level), clipped."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    lo = level - width / 2.0
    g = (np.asarray(hu, np.float32) - lo) / width
    return (np.clip(g, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def overlay_signed(grey: np.ndarray, signed: np.ndarray, opacity: float = 0.5, full_scale_hu: float = 40.0) -> np.ndarray:
    """Grey (H, W) uint8 + signed map (H, W) HU -> RGB (H, W, 3) uint8.

    Red where the input is hyperdense against the reconstruction (signed > 0), blue where it
    is hypodense (signed < 0); the colour's strength grows with |signed| up to full_scale_hu.
    """
    rgb = np.repeat(grey[..., None].astype(np.float32), 3, axis=-1)
    a = np.clip(np.abs(signed) / full_scale_hu, 0.0, 1.0) * float(opacity)
    a = np.where(signed != 0, np.maximum(a, 0.35 * float(opacity)), 0.0)[..., None]
    color = np.where((signed > 0)[..., None], np.array([255.0, 0.0, 0.0]), np.array([40.0, 110.0, 255.0]))
    return (rgb * (1 - a) + color * a + 0.5).astype(np.uint8)


def max_anomaly_slice(signed: np.ndarray, plane: str) -> int:
    """Index (in that plane's slice numbering) of the slice with the largest sum of |signed|;
    the middle slice when the map is empty (a scan with score 0 opens mid-brain, not at the
    top slice)."""
    axis = {"axial": 2, "coronal": 1, "sagittal": 0}[_check_plane(plane)]
    other = tuple(a for a in range(3) if a != axis)
    per_slice = np.abs(signed).sum(axis=other)
    if not per_slice.any():
        return signed.shape[axis] // 2
    return int(per_slice.argmax())


def unit_to_hu(x: np.ndarray) -> np.ndarray:
    """Model units ([0, 1] for the [-10, 90] HU window) back to HU."""
    return np.asarray(x, np.float32) * 100.0 - 10.0


@dataclass(frozen=True)
class Window:
    width: float
    level: float

    @classmethod
    def preset(cls, name: str) -> "Window":
        if name not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {name!r}; presets: {', '.join(WINDOW_PRESETS)}")
        return cls(*WINDOW_PRESETS[name])


def render_pane(
    hu: np.ndarray,
    plane: str,
    index: int,
    window: Window,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    signed: np.ndarray | None = None,
    opacity: float = 0.5,
) -> np.ndarray:
    """One pane: (X, Y, Z) HU volume -> RGB (H, W, 3) uint8 slice, windowed, with the optional
    signed anomaly map (same grid) drawn over it, rows stretched to square millimetres."""
    grey = apply_window(take_slice(hu, plane, index), window.width, window.level)
    if signed is None:
        rgb = np.repeat(grey[..., None], 3, axis=-1)
    else:
        rgb = overlay_signed(grey, take_slice(signed, plane, index), opacity)
    return stretch_rows(rgb, row_stretch(spacing, plane))
