"""One synthetic non-contrast head CT, straight onto its output grid.

Steps (all seeded): draw a subject; build, on a coarse grid, where each output point comes
from in the template (pose, gantry tilt, elastic warp, ventricle growth, the finding's mass
effect); upsample that map and sample the cached tissue maps once with ``grid_sample``;
compose Hounsfield units on thin sub-slices (brain, CSF, falx, vessels, sinuses,
calcifications, skull, scalp, headrest, beam-hardening streaks) with the finding painted
in; average the sub-slices into thick slices; add correlated noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from guad.synth import findings as fnd
from guad.synth.subject import DEFAULT_SITE, Site, Subject, draw_subject, rotation
from guad.synth.template import BRAIN_CHANNELS, HEAD_CENTRE, load_template, ventricle_field

SUB_MM = 1.7  # target sub-slice spacing (mm) for slice-thickness simulation


@dataclass
class SynthScan:
    hu: np.ndarray            # float32 (size, size, n_slices), LPS, HU
    affine: np.ndarray        # (4, 4) NIfTI affine
    truth: dict               # "intracranial", "ventricles", "lesion": bool arrays
    finding: str | None
    lesion_ml: float
    seed: int
    site: Site
    params: dict = field(default_factory=dict)

    @property
    def spacing(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(0))


@dataclass
class Canvas:
    """What a finding may read and change while a scan is made (see findings.py)."""

    rng: np.random.Generator
    subject: Subject
    px: float                           # in-plane pixel (mm)
    t_head: torch.Tensor | None = None  # coarse template coords, skull's map (X, Y, Z, 3)
    t_brain: torch.Tensor | None = None  # coarse, brain's map (after ventricle growth)
    depth: torch.Tensor | None = None   # coarse depth under the intracranial wall (mm)
    # full-resolution sub-slice fields, filled after sampling
    full_head: torch.Tensor | None = None   # (X, Y, Z, 3)
    full_pre: torch.Tensor | None = None    # brain coords before the finding's deformation
    ch: dict = field(default_factory=dict)
    tissue_delta: torch.Tensor | None = None  # HU added to gray and white matter
    gw_blend: torch.Tensor | None = None      # 0..1 loss of gray/white difference
    efface: torch.Tensor | None = None        # 0..1 sulcal CSF turned to swollen tissue
    csf_blood: torch.Tensor | None = None     # 0..1 blood fraction of subarachnoid CSF
    csf_blood_hu: float = 60.0
    overrides: list = field(default_factory=list)  # (weight, HU) painted over brain
    lesion: torch.Tensor | None = None        # 0..1 on sub-slices
    lesion_from_vent: bool = False
    atrophy_lesion: bool = False
    info: dict = field(default_factory=dict)

    def zeros(self) -> torch.Tensor:
        return torch.zeros(self.ch["gm"].shape)

    def add_lesion(self, w: torch.Tensor, sl=None):
        if self.lesion is None:
            self.lesion = self.zeros()
        if sl is None:
            self.lesion = torch.maximum(self.lesion, w)
        else:
            self.lesion[sl] = torch.maximum(self.lesion[sl], w)

    def field_of(self, name: str) -> torch.Tensor:
        cur = getattr(self, name)
        if cur is None:
            cur = self.zeros()
            setattr(self, name, cur)
        return cur

    def mm(self, sl=None, which: str = "pre") -> torch.Tensor:
        """Template mm coords (..., 3) of crop voxels ``sl`` (None: the whole crop)."""
        u = self.full_head_u if which == "head" else self.full_pre_u
        if sl is not None:
            u = u[sl]
        return (u.flip(-1) + 1) * self.half_ext + self.origin

    def region(self, centre, radius: float, coords: str = "pre"):
        """Index slices (crop grid) around a template point, and the mm coords there."""
        c = torch.as_tensor(np.asarray(centre, np.float32))
        coarse = self.t_head if coords == "head" else self.t_pre_coarse
        near = ((coarse - c) ** 2).sum(-1) < (radius + 1.5 * self.coarse_step) ** 2
        if not bool(near.any()):
            return None, None
        idx = near.nonzero()
        shape = self.ch["gm"].shape
        sl = []
        for a in range(2):
            lo = int(idx[:, a].min()) * self.f - self.crop[a] - self.f
            hi = int(idx[:, a].max()) * self.f - self.crop[a] + self.f + 1
            sl.append(slice(max(lo, 0), max(min(hi, shape[a]), 0)))
        sl.append(slice(int(idx[:, 2].min()), int(idx[:, 2].max()) + 1))
        sl = tuple(sl)
        if any(x.stop <= x.start for x in sl):
            return None, None
        return sl, self.mm(sl, coords)


def _scanner_coords(nc: int, f: int, n: int, n_sub: int, px: float, z_sub) -> torch.Tensor:
    """RAS mm of the coarse grid: nodes every ``f`` output pixels (may pass the FOV edge)."""
    ii = np.arange(nc) * f
    x = -(ii - (n - 1) / 2) * px
    X, Y, Z = np.meshgrid(x, x, z_sub, indexing="ij")
    return torch.from_numpy(np.stack([X, Y, Z], -1).astype(np.float32))


def _grid_for(t, coords: torch.Tensor) -> torch.Tensor:
    return t.to_unit(coords)[None]


def _full(coarse: torch.Tensor, f: int, crop) -> torch.Tensor:
    """Coarse (nc, nc, nz, C) -> crop of the full grid (cx, cy, nz, C), trilinear."""
    i0, i1, j0, j1 = crop
    a0, b0, a1, b1 = i0 // f, -(-(i1 - 1) // f), j0 // f, -(-(j1 - 1) // f)
    nz, nch = coarse.shape[2], coarse.shape[3]
    # z keeps its size: bilinear in-plane on (z, channel) planes (half the taps of trilinear)
    blk = coarse[a0:b0 + 1, a1:b1 + 1].permute(2, 3, 0, 1).reshape(1, nz * nch, b0 - a0 + 1,
                                                                  b1 - a1 + 1)
    up = F.interpolate(blk, size=((b0 - a0) * f + 1, (b1 - a1) * f + 1), mode="bilinear",
                       align_corners=True)[0]
    up = up[:, i0 - a0 * f:i1 - a0 * f, j0 - a1 * f:j1 - a1 * f]
    return up.reshape(nz, nch, i1 - i0, j1 - j0).permute(2, 3, 0, 1).contiguous()


def _sample_u(tensor: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(tensor, unit[None], mode="bilinear", padding_mode="border",
                         align_corners=True)[0]


def generate_scan(seed: int, finding: str | None = None, size: int = 256,
                  site: Site | None = None, severity: float | None = None,
                  noise_seed: int | None = None) -> SynthScan:
    """A synthetic non-contrast head CT; ``finding`` one of FINDINGS or None (normal).

    ``severity`` in [0, 1] (None: drawn) sets the finding's size/contrast; 0 is subtle.
    ``noise_seed`` (None: derived from ``seed``) redraws only the scanner noise: the same
    patient scanned twice, which is the floor for a reconstruction that draws its own noise.
    The same arguments give the same array, bit for bit."""
    if finding is not None and finding not in fnd.FINDINGS:
        raise ValueError(f"unknown finding {finding!r}; expected one of {sorted(fnd.FINDINGS)}")
    site = site or DEFAULT_SITE
    # one thread: faster here (small ops) and leaves other cores to parallel workers
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return _generate(int(seed), finding, int(size), site, severity, noise_seed)
    finally:
        torch.set_num_threads(threads)


def _generate(seed, finding, n, site, severity, noise_seed=None) -> SynthScan:
    tpl = load_template()
    rng = np.random.default_rng([seed, 0])
    subj = draw_subject(rng, site)
    frng = np.random.default_rng([seed, 1 + fnd.FINDING_CODES.get(finding, 0)])
    finding_obj = fnd.FINDINGS[finding](frng, severity) if finding else None

    px = site.fov / n
    thick = site.thickness
    n_slices = int(math.ceil(site.coverage / thick))
    S = max(1, int(round(thick / SUB_MM)))
    n_sub = n_slices * S
    f = 4 if n >= 64 else 2
    nc = -(-(n - 1) // f) + 1

    # --- placement: template point t -> scanner s = A (t - tc) + sc
    A = rotation(subj.angles) @ np.diag(subj.scale)
    tc = np.asarray(HEAD_CENTRE)
    top = ((tpl.top_points - tc) @ A.T)[:, 2].max() + subj.skull + subj.scalp
    sc = np.array([subj.shift[0], subj.shift[1] + 8.0, site.coverage - subj.shift[2] - top])
    k = np.arange(n_sub)
    z_sub = ((k // S) + ((k % S) + 0.5) / S) * thick  # sub-slice centres, mm
    s = _scanner_coords(nc, f, n, n_sub, px, z_sub)
    Ainv = torch.tensor(np.linalg.inv(A).T, dtype=torch.float32)
    t_rigid = (s - torch.tensor(sc, dtype=torch.float32)) @ Ainv + torch.tensor(tc, dtype=torch.float32)

    # elastic warp: random control lattice over the template box, smoothed, ~3 mm SD
    lat = torch.from_numpy(subj.elastic.astype(np.float32))[None]
    lat = F.interpolate(lat, size=(12, 14, 12), mode="trilinear", align_corners=True)
    lat = F.avg_pool3d(F.pad(lat, (1, 1, 1, 1, 1, 1), mode="replicate"), 3, 1)
    lat = lat / lat.std() * 3.0
    box_lo, box_hi = torch.tensor([-80.0, -120.0, -80.0]), torch.tensor([80.0, 85.0, 95.0])
    unit = ((t_rigid - box_lo) / (box_hi - box_lo) * 2 - 1).flip(-1)[None]
    warp = F.grid_sample(lat, unit, align_corners=True, padding_mode="border")[0].permute(1, 2, 3, 0)
    t_head = t_rigid + warp

    cv = Canvas(rng=frng, subject=subj, px=px)
    cv.f = f
    cv.coarse_step = px * f / float(subj.scale.min())
    cv.t_head = t_head
    cv.depth = -_sample_u(tpl.head[:, :1], tpl.to_unit(t_head))[0]  # mm inside the wall
    vgrow = subj.vent_grow + (finding_obj.vent_grow(subj) if finding_obj else 0.0)
    t_pre = _grow_ventricles(tpl, t_head, vgrow)
    cv.t_brain = cv.t_pre_coarse = t_pre
    if finding_obj:
        finding_obj.deform(cv)  # may move cv.t_brain (mass effect)

    # --- crop to the head (in-plane), then one sampling pass per map family
    outer = (subj.skull + subj.scalp + 6.0) / float(subj.scale.min())
    inside = (cv.depth > -outer).any(2)
    ii = inside.any(1).nonzero()[:, 0]
    jj = inside.any(0).nonzero()[:, 0]
    crop = (max(int(ii.min()) * f - f, 0), min(int(ii.max()) * f + f + 1, n),
            max(int(jj.min()) * f - f, 0), min(int(jj.max()) * f + f + 1, n))
    cv.crop = (crop[0], crop[2])
    cv.origin = torch.tensor(tpl.origin, dtype=torch.float32)
    cv.half_ext = torch.tensor([(m - 1) * tpl.spacing / 2 for m in tpl.shape], dtype=torch.float32)
    cv.full_head_u = _full(tpl.to_unit(t_head), f, crop)
    brain_u = _full(tpl.to_unit(cv.t_brain), f, crop)
    cv.full_pre_u = brain_u if cv.t_brain is t_pre else _full(tpl.to_unit(t_pre), f, crop)
    hb = _sample_u(tpl.head, cv.full_head_u)     # (2, cx, cy, Z)
    cv.ch = {"sdf": hb[0], "sinus": hb[1]}
    # brain maps only matter inside the intracranial space (sdf < half a voxel): sample
    # them at those points only (about half of the crop), zero elsewhere
    pv = px / float(subj.scale.mean())
    inside = hb[0] < max(0.5 * pv, 0.5) + 1.0
    bb = torch.zeros((len(BRAIN_CHANNELS),) + tuple(inside.shape))
    pts = brain_u[inside]
    if len(pts):
        bb[:, inside] = F.grid_sample(tpl.brain, pts[None, :, None, None], mode="bilinear",
                                      padding_mode="border", align_corners=True)[0, :, :, 0, 0]
    cv.ch.update({name: bb[i] for i, name in enumerate(BRAIN_CHANNELS)})
    del brain_u, hb, bb, pts, inside
    # skull thickness varies over the head: thin temporal squama, thicker occiput
    rel = t_head - torch.tensor(HEAD_CENTRE, dtype=torch.float32)
    rn = rel / rel.norm(dim=-1, keepdim=True).clamp_min(1e-3)
    thick_c = subj.skull * (1.0 - 0.35 * rn[..., 0].abs() + 0.15 * (-rn[..., 1]).clamp_min(0))
    cv.skull_mm = _full(thick_c[..., None] / float(subj.scale.mean()), f, crop)[..., 0]

    _physiological_calcifications(cv, tpl)
    if finding_obj:
        finding_obj.paint(cv)

    hu_c, ic_c, vent_c, les_c = _compose(cv, subj, site, px)
    i0, i1, j0, j1 = crop

    def place(x, fill):
        out = torch.full((n, n, n_sub), float(fill))
        out[i0:i1, j0:j1] = x
        return out

    hu_sub = place(hu_c, -1000.0)
    _headrest(hu_sub, subj, sc, A, px, n)

    def thick_avg(x):
        return x.reshape(x.shape[0], x.shape[1], n_slices, S).mean(-1)

    hu = thick_avg(hu_sub)
    ic_t = thick_avg(ic_c) > 0.5
    vent_t = (thick_avg(vent_c) > 0.5) & ic_t
    if cv.lesion_from_vent:
        les_t = vent_t.clone()
    elif les_c is not None:
        avg = thick_avg(les_c)
        les_t = avg > 0.5
        if not bool(les_t.any()):  # small dots: any sub-slice mostly inside
            les_t = les_c.reshape(*avg.shape, S).amax(-1) > 0.5
        les_t &= ic_t
    else:
        les_t = torch.zeros_like(ic_t)

    def place_b(x):
        out = torch.zeros((n, n, n_slices), dtype=torch.bool)
        out[i0:i1, j0:j1] = x
        return out

    truth = {"intracranial": place_b(ic_t), "ventricles": place_b(vent_t), "lesion": place_b(les_t)}

    # --- noise: in-plane correlated, independent between slices
    g = torch.Generator().manual_seed(seed * 7919 + 17 if noise_seed is None else int(noise_seed))
    noise = torch.randn(hu.shape, generator=g)
    sig = max(0.6 / px, 0.35)
    r = max(1, int(math.ceil(2.5 * sig)))
    ker = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sig) ** 2)
    ker = ker / ker.sum()
    nz = noise.permute(2, 0, 1)[:, None]
    nz = F.conv2d(F.pad(nz, (r, r, r, r), mode="reflect"), ker.view(1, 1, -1, 1))
    nz = F.conv2d(nz, ker.view(1, 1, 1, -1))[:, 0].permute(1, 2, 0)
    nz = nz / float(ker.pow(2).sum())  # unit variance after filtering
    hu = (hu + nz * subj.noise_sd + subj.hu_offset).clamp(-1024, 3071)

    spacing = np.array([px, px, thick])
    affine = np.diag([-px, -px, thick, 1.0])
    affine[:3, 3] = [px * (n - 1) / 2, px * (n - 1) / 2, thick / 2]  # slice k at (k + .5) T
    truth_np = {key: v.numpy() for key, v in truth.items()}
    lesion_ml = float(truth_np["lesion"].sum() * np.prod(spacing) / 1000.0)
    params = {"age": subj.age, "atrophy": subj.atrophy, "vent_grow": vgrow,
              "tilt": float(subj.angles[0]), **cv.info}
    return SynthScan(hu=hu.numpy(), affine=affine, truth=truth_np, finding=finding,
                     lesion_ml=lesion_ml if finding else 0.0, seed=seed, site=site, params=params)


def _headrest(hu: torch.Tensor, subj: Subject, sc, A, px: float, n: int) -> None:
    """A carbon shell behind the head (scanner space, constant along z), in place."""
    ii = torch.arange(n, dtype=torch.float32)
    xr = -(ii - (n - 1) / 2) * px
    Xr, Yr = torch.meshgrid(xr, xr, indexing="ij")
    rad = float(abs(A[1, 1]) * 118 + subj.skull + subj.scalp + 6.0)
    cy = float(sc[1]) - 14.0
    rr = torch.sqrt((Xr - float(sc[0])) ** 2 + (Yr - cy) ** 2)
    shell = ((2.5 - (rr - rad).abs()) / 1.0).clamp(0, 1) * (Yr < cy - rad * 0.5)
    m = shell > 0
    hu[m] = hu[m] + shell[m][:, None] * (220.0 - hu[m])


def _grow_ventricles(tpl, coords: torch.Tensor, mm: float, steps: int | None = None):
    """Move sampling points along the ventricle field: ventricles grow by about ``mm``."""
    if abs(mm) < 1e-3:
        return coords
    fld = ventricle_field()
    steps = steps or max(1, int(math.ceil(abs(mm) / 1.5)))
    out = coords
    for _ in range(steps):
        v = F.grid_sample(fld, _grid_for(tpl, out), align_corners=True, padding_mode="zeros")[0]
        out = out + v.permute(1, 2, 3, 0) * (mm / steps) * 1.6
    return out


def _physiological_calcifications(cv: Canvas, tpl):
    subj = cv.subject
    spots = []
    if subj.pineal_calc > 0:
        spots.append((tpl.landmarks["pineal"], subj.pineal_calc, 90 + 40 * subj.pineal_calc))
    if subj.choroid_calc > 0:
        for c in tpl.landmarks["choroid"]:
            spots.append((c, subj.choroid_calc, 60 + 30 * subj.choroid_calc))
    for c, r, hu in spots:
        fnd.paint_blob(cv, c, r, hu, lesion=False, irregular=0.15)


def _bbox(m: torch.Tensor) -> tuple[slice, slice, slice]:
    """Index slices of the bounding box of a boolean (X, Y, Z) mask (1 voxel if empty)."""
    out = []
    for a in range(3):
        dims = tuple(d for d in range(3) if d != a)
        nz = m.any(dims[1]).any(dims[0]).nonzero()[:, 0]
        out.append(slice(int(nz[0]), int(nz[-1]) + 1) if len(nz) else slice(0, 1))
    return tuple(out)


def _compose(cv: Canvas, subj: Subject, site: Site, px: float):
    """HU on the crop's sub-slices, plus intracranial / ventricle / lesion fractions."""
    ch = cv.ch
    pv = px / float(subj.scale.mean())   # template mm per output pixel
    sdf = ch["sdf"]
    ic = (0.5 - sdf / pv).clamp_(0, 1)
    # the brain only where the intracranial space is: its bounding box in the crop
    bx = _bbox(ic > 0)

    def B(t):
        return t[bx] if isinstance(t, torch.Tensor) and t.dim() == 3 else t

    icb = ic[bx]
    gm, wm = ch["gm"][bx], ch["wm"][bx]
    lost = None
    if subj.atrophy > 0:  # gray matter next to sulci turns to CSF
        theta = 1.0 - 0.95 * subj.atrophy
        lost = (gm * ((ch["prox"][bx] - theta) / 0.25).clamp_(0, 1)
                * min(1.0, 1.4 * subj.atrophy + 0.3))
        gm = gm - lost
    over = ((gm + wm) / icb.clamp_min(1e-3)).clamp_min_(1.0)
    gm, wm = gm / over, wm / over
    csf = (icb - gm - wm).clamp_min_(0)
    vent = torch.minimum(ch["vent"][bx], csf)
    hu_gm = subj.hu_gm + subj.hu_deep * ch["deep"][bx]
    hu_wm = subj.hu_wm
    if cv.gw_blend is not None:
        hu_gm = hu_gm - B(cv.gw_blend) * (hu_gm - subj.hu_wm) * 0.9
    if cv.tissue_delta is not None:
        hu_gm = hu_gm + B(cv.tissue_delta)
        hu_wm = hu_wm + B(cv.tissue_delta)
    if cv.efface is not None:  # swollen gyri fill the sulci
        moved = (csf - vent) * B(cv.efface).clamp(0, 1)
        gm = gm + moved
        csf = csf - moved
    brain = gm * hu_gm + wm * hu_wm
    if cv.csf_blood is not None:
        sub_frac = (1 - vent / csf.clamp_min(1e-3)).clamp_(0, 1)
        brain += csf * (subj.hu_csf + B(cv.csf_blood) * sub_frac * (cv.csf_blood_hu - subj.hu_csf))
    else:
        brain += csf * subj.hu_csf
    brain /= icb.clamp_min(1e-3)
    brain += ch["dense"][bx] * 0.9 * (subj.hu_falx - brain)
    brain += ch["sinus"][bx] * (subj.hu_blood - brain)
    for w, val in cv.overrides:
        if isinstance(w, tuple):
            sl, ww = w
            lo = [max(a.start, b.start) for a, b in zip(sl, bx)]
            hi = [min(a.stop, b.stop) for a, b in zip(sl, bx)]
            if any(h <= l for l, h in zip(lo, hi)):
                continue
            src = tuple(slice(l - a.start, h - a.start) for l, h, a in zip(lo, hi, sl))
            dst = tuple(slice(l - b.start, h - b.start) for l, h, b in zip(lo, hi, bx))
            ww = ww[src]
            v = val[src] if isinstance(val, torch.Tensor) and val.dim() == 3 else val
            b = brain[dst]
            brain[dst] = b + ww * (v - b)
        else:
            brain += B(w) * (B(val) - brain)

    # skull (inner and outer tables over diploe) and scalp (skin over fat)
    thick = cv.skull_mm
    d = sdf
    bone = (d / pv + 0.5).clamp_(0, 1) * ((thick - d) / pv + 0.5).clamp_(0, 1)
    u = (d / thick).clamp_(0, 1)
    hu_bone = 620 + 1000 * (torch.exp(-(u / 0.24) ** 2) + torch.exp(-((1 - u) / 0.24) ** 2))
    sc_t = subj.scalp / float(subj.scale.mean())
    scalp = ((d - thick) / pv + 0.5).clamp_(0, 1) * ((thick + sc_t - d) / pv + 0.5).clamp_(0, 1)
    v = ((d - thick) / sc_t).clamp_(0, 1)
    hu_scalp = 45 - 130 * torch.exp(-((v - 0.45) / 0.22) ** 2)
    air = (1 - ic - bone - scalp).clamp_min_(0)
    hu = bone * hu_bone + scalp * hu_scalp - 1000.0 * air
    hu[bx] += icb * brain

    # beam hardening: a dark bar and streaks across the posterior fossa
    if site.streaks > 0:
        zc = cv.mm((slice(hu.shape[0] // 2, hu.shape[0] // 2 + 1),
                    slice(hu.shape[1] // 2, hu.shape[1] // 2 + 1)), "head")[0, 0, :, 2]
        amp = site.streaks * torch.exp(-((zc + 30.0) / 9.0) ** 2)
        ks = (amp > 0.05).nonzero()[:, 0]
        if len(ks):
            sl = (slice(None), slice(None), slice(int(ks.min()), int(ks.max()) + 1))
            t = cv.mm(sl, "head")
            bar = -10.0 * torch.exp(-((t[..., 1] + 40.0) / 4.0) ** 2)
            ang = torch.atan2(t[..., 1] + 60.0, t[..., 0])
            streak = 6.0 * torch.sin(ang * 23.0 + 0.7) * torch.exp(-((t[..., 1] + 45) / 25.0) ** 2)
            hu[sl] += (bar + streak) * amp[sl[2]] * (ic[sl] > 0.5)
    vent_out = torch.zeros_like(ic)
    vent_out[bx] = (vent > 0.5 * icb).float() * (icb > 0.5)
    les = cv.lesion
    if cv.atrophy_lesion and lost is not None:
        les = torch.zeros_like(ic)
        les[bx] = (lost > 0.4).float()
    return hu, ic, vent_out, les
