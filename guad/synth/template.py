"""Tissue maps of one average head, built once from the MNI152 templates nilearn ships.

The 2009 symmetric ICBM152 gray- and white-matter maps and brain mask (1 mm, inside
nilearn's wheel, no network) give gray matter, white matter and, as what the mask holds
beyond them, CSF. From them this module derives what a CT needs and the template lacks:
the intracranial space and a signed distance to its wall (skull and scalp are drawn from
that distance), the ventricles, deep gray nuclei, the falx and large vessels, the dural
venous sinuses, and a sulcal-proximity map that atrophy uses to widen sulci.

The maps are resampled to a 1.5 mm grid and cached under ``guad.paths.CACHE_DIR``
(a few MB, recomputed in about half a minute when missing).

Coordinates are MNI millimetres, RAS+ (+x toward the patient's right, +y anterior,
+z superior).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from guad import paths

CACHE_VERSION = 6
SPACING = 1.5  # mm, the cached grid
# channels sampled with the brain's deformation / with the skull's (rigid) deformation
BRAIN_CHANNELS = ("gm", "wm", "vent", "dense", "deep", "prox")
HEAD_CHANNELS = ("sdf", "sinus")

# Landmarks (MNI mm) that the anatomy of the 2009 template puts here; checked against
# its ventricles and cisterns when the cache is built (see _landmarks).
GLOBUS_PALLIDUS = ((-19.0, -4.0, -1.0), (19.0, -4.0, -1.0))
DENTATE = ((-14.0, -58.0, -34.0), (14.0, -58.0, -34.0))
SUPRASELLAR_CISTERN = (0.0, -6.0, -14.0)
SYLVIAN = ((-40.0, 6.0, -6.0), (40.0, 6.0, -6.0))
HEAD_CENTRE = (0.0, -18.0, 8.0)  # middle of the intracranial space's bounding box


@dataclass(frozen=True)
class Template:
    """The cached maps. ``brain``/``head``: float32 tensors (1, C, nx, ny, nz)."""

    brain: torch.Tensor
    head: torch.Tensor
    origin: np.ndarray  # (3,) MNI mm of voxel (0, 0, 0)
    spacing: float
    shape: tuple[int, int, int]
    sites: dict[str, np.ndarray]  # candidate lesion centres, (n, 3) MNI mm
    landmarks: dict[str, np.ndarray]
    top_points: np.ndarray  # (n, 3) points on the intracranial wall's upper half

    def to_unit(self, pts: torch.Tensor) -> torch.Tensor:
        """MNI mm (..., 3) -> grid_sample coordinates (..., 3), last axis ordered (z, y, x)."""
        o = torch.as_tensor(self.origin, dtype=pts.dtype)
        ext = torch.as_tensor([(n - 1) * self.spacing for n in self.shape], dtype=pts.dtype)
        u = (pts - o) / ext * 2 - 1
        return u.flip(-1)


def cache_path():
    return paths.CACHE_DIR / f"synth_template_v{CACHE_VERSION}.npz"


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """The cached template, built on first use."""
    path = cache_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = build_arrays()
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
    z = np.load(path)
    brain = np.stack([z[c].astype(np.float32) / 250.0 for c in BRAIN_CHANNELS])
    head = np.stack([z["sdf"].astype(np.float32) / 10.0, z["sinus"].astype(np.float32) / 250.0])
    sites = {k[5:]: z[k] for k in z.files if k.startswith("site_")}
    landmarks = {k[3:]: z[k] for k in z.files if k.startswith("lm_")}
    return Template(
        brain=torch.from_numpy(brain)[None],
        head=torch.from_numpy(head)[None],
        origin=z["origin"], spacing=float(z["spacing"]), shape=tuple(int(s) for s in z["shape"]),
        sites=sites, landmarks=landmarks, top_points=z["top_points"],
    )


@functools.lru_cache(maxsize=1)
def ventricle_field() -> torch.Tensor:
    """(1, 3, nx, ny, nz) mm-per-unit field pointing into the ventricles (max length 1).

    Adding ``alpha * field`` to sampling coordinates grows the ventricles by a smooth
    deformation (tissue around them is compressed, not overwritten)."""
    from scipy import ndimage
    t = load_template()
    v = ndimage.gaussian_filter(t.brain[0, 2].numpy(), 5.0 / t.spacing)
    g = np.stack(np.gradient(v), 0)
    g /= np.linalg.norm(g, axis=0).max() + 1e-9
    return torch.from_numpy(g.astype(np.float32))[None]


# --------------------------------------------------------------------------- building
def _edt(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    return ndimage.distance_transform_edt(mask).astype(np.float32)


def _segment_tube(coords, a, b, radius):
    """Soft tube (0..1) of given radius around the segment a-b; coords (..., 3) mm."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    ab = b - a
    t = np.clip(((coords - a) @ ab) / float(ab @ ab), 0, 1)
    d = np.linalg.norm(coords - (a + t[..., None] * ab), axis=-1)
    return np.clip(radius + 0.5 - d, 0, 1)


def _keep_big(m: np.ndarray, n_min: int) -> np.ndarray:
    from scipy import ndimage
    lab, n = ndimage.label(m)
    if n == 0:
        return m
    sizes = ndimage.sum(m, lab, index=np.arange(1, n + 1))
    return np.isin(lab, 1 + np.flatnonzero(sizes >= n_min))


def _ventricle_parts(csf, X, Y, Z, origin) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Ventricle core (1 mm grid) and its parts: lateral, third, fourth, temporal horns."""
    from scipy import ndimage
    lab, _ = ndimage.label(csf > 0.5)
    seeds = [tuple(int(round(a - o)) for a, o in zip((s * 12.0, 0.0, 22.0), origin))
             for s in (-1, 1)]  # the lateral ventricles' bodies
    ids = sorted({int(lab[v]) for v in seeds} - {0})
    lateral = np.isin(lab, ids)
    del lab
    # the 2009 template's lateral ventricles hold about 18 mL of CSF > 0.5; much more means
    # the piece leaked into the subarachnoid space (a changed template): stop, do not cache
    if not 8_000 < int(lateral.sum()) < 45_000:
        raise RuntimeError(f"lateral ventricles: {int(lateral.sum()) / 1000:.1f} mL, "
                           "expected about 18 mL; check the template")
    ax = np.abs(X)
    third = _keep_big((csf > 0.4) & (ax < 4.5) & (Y > -28) & (Y < 3) & (Z > -12) & (Z < 18), 100)
    fourth = _keep_big((csf > 0.5) & (ax < 12) & (Y > -56) & (Y < -34) & (Z > -42) & (Z < -22),
                       200)
    temporal = _keep_big((csf > 0.4) & (ax > 22) & (ax < 38) & (Y > -42) & (Y < -5)
                         & (Z > -26) & (Z < -6), 40)
    parts = {"lateral": lateral, "third": third, "fourth": fourth, "temporal": temporal}
    return lateral | third | fourth | temporal, parts


def build_arrays() -> dict[str, np.ndarray]:
    """Derive every map from nilearn's MNI152 files (1 mm), then resample to 1.5 mm."""
    from nilearn import datasets
    from scipy import ndimage

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    gm = np.asarray(gm_img.get_fdata(), np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(), np.float32)
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata(), np.float32) > 0.5
    aff = gm_img.affine
    origin = aff[:3, 3].copy()
    # pad 28 mm below (the grid stops at the cerebellum) so the skull base closes
    pad = 28
    gm = np.pad(gm, ((0, 0), (0, 0), (pad, 0)))
    wm = np.pad(wm, ((0, 0), (0, 0), (pad, 0)))
    mask = np.pad(mask, ((0, 0), (0, 0), (pad, 0)))
    origin[2] -= pad
    gm *= mask
    wm *= mask
    csf = np.clip(mask.astype(np.float32) - gm - wm, 0, 1)

    # intracranial space: closing (6 mm) of the brain mask, holes filled, smoothed
    out_d = _edt(~mask)
    closed = _edt(out_d <= 6) > 6
    closed = ndimage.binary_fill_holes(closed | mask)
    closed = ndimage.gaussian_filter(closed.astype(np.float32), 2.0) > 0.5
    closed |= mask
    sdf = _edt(~closed) - _edt(closed)  # mm, > 0 outside

    # ventricles, and only they (no fissures or cisterns). Lateral ventricles: the connected
    # piece of CSF > 0.5 that holds both bodies (the corpus callosum and the ependyma keep
    # it apart from the interhemispheric and Sylvian fissures in this template). The 3rd,
    # the 4th ventricle and the temporal horns are thin or open into cisterns here, so they
    # are CSF inside anatomical boxes (MNI mm) that stop where the cisterns begin.
    nx, ny, nz = mask.shape
    xs = origin[0] + np.arange(nx, dtype=np.float32)
    ys = origin[1] + np.arange(ny, dtype=np.float32)
    zs = origin[2] + np.arange(nz, dtype=np.float32)
    X, Y, Z = np.meshgrid(xs, ys, zs, indexing="ij")
    depth = _edt(mask)
    vent_core, vent_parts = _ventricle_parts(csf, X, Y, Z, origin)
    # extend to the partial-volume rim of the same CSF
    vent = ndimage.binary_dilation(vent_core, iterations=2) & (csf > 0.15) & (depth > 6)
    vent_soft = (vent * csf).astype(np.float32)


    # deep gray nuclei: gray matter far from the brain surface, not ventricle
    surf_csf = _edt(~((csf > 0.4) & ~vent & mask))
    box = (np.abs(X) < 34) & (Y > -38) & (Y < 30) & (Z > -14) & (Z < 26)
    deep = ((gm > 0.4) & (surf_csf > 7) & ~vent & box).astype(np.float32)
    deep = ndimage.gaussian_filter(deep, 1.0) * (gm > 0.2)
    del surf_csf

    # falx: a thin sheet in the interhemispheric fissure, above the highest midline white
    # matter (corpus callosum; cerebellar white matter posteriorly)
    ix0 = int(round(-origin[0]))
    mid_wm = (wm[ix0 - 2:ix0 + 3] > 0.4).any(0)  # (ny, nz)
    mid_wm &= (Y[ix0] > -44) & (Y[ix0] < 34)  # corpus callosum only
    zidx = np.arange(nz)
    top_wm = np.where(mid_wm.any(1), (mid_wm * zidx[None]).max(1), -1)  # per y
    Ym, Zm = Y[ix0], Z[ix0]
    sheet = (zidx[None, :] > top_wm[:, None] + 3) & closed[ix0] & (Zm > -8)
    sheet &= Zm > -14 + 0.25 * (Ym + 100) + 4  # stops at the tentorium
    sheet = ndimage.binary_opening(sheet, iterations=1)
    falx = np.exp(-0.5 * (xs / 0.7) ** 2)[:, None, None] * sheet[None]
    # large arteries in the cisterns: basilar, internal carotid termini, M1/M2 segments
    vessels = np.zeros_like(gm)
    # (box in voxels around the circle of Willis keeps this cheap)
    bx = tuple(slice(int(lo - o), int(hi - o)) for lo, hi, o in
               zip((-50, -30, -50), (50, 20, 12), origin))
    coords = np.stack([X[bx], Y[bx], Z[bx]], -1)
    v = _segment_tube(coords, (0, -10, -44), (0, -14, -14), 1.6)
    for sg in (-1, 1):
        v = np.maximum(v, _segment_tube(coords, (sg * 14, 2, -20), (sg * 14, 0, -12), 1.7))
        v = np.maximum(v, _segment_tube(coords, (sg * 14, 0, -12), (sg * 36, 6, -10), 1.4))
        v = np.maximum(v, _segment_tube(coords, (sg * 36, 6, -10), (sg * 40, -2, 6), 1.0))
        v = np.maximum(v, _segment_tube(coords, (0, -14, -14), (sg * 10, -22, -10), 1.0))
    vessels[bx] = v * (csf[bx] > 0.3)
    del coords, v
    dense = np.clip(np.maximum(falx, vessels), 0, 1).astype(np.float32)

    # dural venous sinuses, just inside the intracranial wall
    inner = -sdf  # mm inside the wall
    band = np.clip(1 - np.abs(inner - 3.0) / 3.5, 0, 1)
    sss = band * np.clip(1 - np.abs(X) / np.clip(5 - inner * 0.55, 1, 5), 0, 1) * (Z > -5)
    z_tent = -14 + 0.25 * (Y + 100)  # tentorial attachment rises forwards
    trans = band * np.clip(1 - np.abs(Z - z_tent) / 4.5, 0, 1) * (Y < -55) * (np.abs(X) > 4)
    bx = tuple(slice(int(lo - o), int(hi - o)) for lo, hi, o in
               zip((-10, -110, -25), (10, -50, 10), origin))
    straight = np.zeros_like(gm)
    straight[bx] = _segment_tube(np.stack([X[bx], Y[bx], Z[bx]], -1),
                                 (0, -58, 2), (0, -96, -14), 2.8) * closed[bx]
    sinus = np.clip(np.maximum(np.maximum(sss, trans), straight), 0, 1).astype(np.float32)

    # sulcal proximity: how close gray matter is to subarachnoid CSF (atrophy widens here)
    sub = csf * (~vent) * mask
    prox = np.clip(ndimage.gaussian_filter(sub, 1.5) * 1.6, 0, 1)

    maps = {"gm": gm, "wm": wm, "vent": vent_soft, "dense": dense, "deep": deep, "prox": prox,
            "sdf": np.clip(sdf, -60, 60), "sinus": sinus}

    # resample to the cached grid (trilinear)
    lo = origin + np.array([2.0, 2.0, 0.0])
    hi = origin + np.array(mask.shape) - 3
    shape = tuple(int(np.floor((h - l) / SPACING)) + 1 for l, h in zip(lo, hi))
    g = [lo[i] + SPACING * np.arange(shape[i]) - origin[i] for i in range(3)]
    import torch.nn.functional as F
    mesh = np.stack(np.meshgrid(*g, indexing="ij"), -1)  # voxel coords in the 1 mm grid
    unit = mesh / (np.array(mask.shape) - 1) * 2 - 1
    grid = torch.from_numpy(unit[..., ::-1].astype(np.float32).copy())[None]
    out: dict[str, np.ndarray] = {}
    for name, arr in maps.items():
        t = torch.from_numpy(np.ascontiguousarray(arr, np.float32))[None, None]
        r = F.grid_sample(t, grid, align_corners=True)[0, 0].numpy()
        if name == "sdf":
            out[name] = np.round(r * 10).astype(np.int16)
        else:
            out[name] = np.round(np.clip(r, 0, 1) * 250).astype(np.uint8)

    # candidate lesion centres (MNI mm), subsampled deterministically
    rs = np.random.default_rng(0)

    def pick(m, n=3000):
        idx = np.argwhere(m)
        idx = idx[rs.permutation(len(idx))[:n]]
        return (idx + origin).astype(np.float32)

    supra = Z > -18
    out["site_deep_gm"] = pick((deep > 0.6) & (gm > 0.5))
    out["site_deep_wm"] = pick((wm > 0.9) & (depth > 14) & supra & (depth < 40))
    out["site_lobar"] = pick(((gm + wm) > 0.9) & (depth > 12) & (depth < 32) & supra & ~vent)
    out["site_cortex"] = pick((gm > 0.6) & (depth > 2) & (depth < 12) & supra)
    out["site_cerebellum"] = pick((gm + wm > 0.9) & (Z < -30) & (Y < -50) & (depth > 10))
    out["site_convexity"] = pick((np.abs(sdf) < 1.5) & (Z > 5) & (np.abs(X) > 25))
    tp = np.argwhere((np.abs(sdf) < 1.5) & (Z > 0))
    out["top_points"] = (tp[rs.permutation(len(tp))[:4000]] + origin).astype(np.float32)

    for k, v in _landmarks(vent_parts["lateral"] | vent_parts["third"], origin).items():
        out["lm_" + k] = np.asarray(v, np.float32)
    out["origin"] = lo.astype(np.float64)
    out["spacing"] = np.float64(SPACING)
    out["shape"] = np.array(shape)
    return out


def _landmarks(vent: np.ndarray, origin: np.ndarray) -> dict[str, np.ndarray]:
    """Pineal gland and choroid plexus glomera, placed from the template's ventricles."""
    idx = np.argwhere(vent) + origin
    x, y, z = idx.T
    # a rule from the third ventricle landed the pineal too far back: textbook MNI position
    pineal = np.array([0.0, -32.0, 1.0])
    glom = []
    for s in (-1, 1):
        side = idx[(x * s > 8)]
        ymin = side[:, 1].min()
        atrium = side[(side[:, 1] > ymin + 18) & (side[:, 1] < ymin + 32)]
        glom.append(atrium.mean(0))
    return {"pineal": pineal, "choroid": np.array(glom)}
