"""Findings, one class each: ``deform`` (mass effect, before sampling) and ``paint``.

Every finding draws its size/contrast from ``severity`` in [0, 1] (drawn when not given,
skewed so that small and subtle cases are common). Coordinates are template (MNI) mm.
"""

from __future__ import annotations

import numpy as np
import torch

from guad.synth.template import HEAD_CENTRE, SUPRASELLAR_CISTERN, SYLVIAN, GLOBUS_PALLIDUS, \
    DENTATE, load_template

CRITICAL = ("ich", "sdh", "sah", "infarct", "mass", "hydrocephalus")
BENIGN = ("lacune", "calcification", "atrophy")
FINDING_CODES = {f: i + 1 for i, f in enumerate(CRITICAL + BENIGN)}


def _rand_field(rng, pts: torch.Tensor, wavelength: float, n: int = 6) -> torch.Tensor:
    """Smooth random field (about unit SD) at points (..., 3): a sum of plane waves."""
    dirs = rng.normal(0, 1, (n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    k = torch.tensor(dirs * (2 * np.pi / wavelength) * rng.uniform(0.7, 1.3, (n, 1)),
                     dtype=torch.float32)
    ph = torch.tensor(rng.uniform(0, 2 * np.pi, n), dtype=torch.float32)
    return torch.cos(pts @ k.T + ph).sum(-1) * float(np.sqrt(2.0 / n))


def paint_blob(cv, centre, radius, hu, lesion=True, irregular=0.2, axes=(1, 1, 1), rng=None,
               edema=0.0, edema_mm=0.0):
    """Irregular ellipsoid of given HU (and an optional hypodense rim) at a template point."""
    rng = rng or cv.rng
    reach = radius * max(axes) * (1 + irregular) + edema_mm + 2
    sl, pts = cv.region(centre, reach)
    if sl is None:
        return None
    c = torch.tensor(np.asarray(centre, np.float32))
    rel = (pts - c) / torch.tensor(np.asarray(axes, np.float32) * radius)
    q = rel.norm(dim=-1)
    if irregular:
        q = q + irregular * _rand_field(rng, pts, wavelength=max(4 * radius, 6))
    pv = cv.px / float(cv.subject.scale.mean())
    w = ((1 - q) * radius / pv + 0.5).clamp(0, 1)
    cv.overrides.append(((sl, w), float(hu)))
    if edema and edema_mm:
        ring = ((1 + edema_mm / radius - q) * radius / 2.0).clamp(0, 1) * (1 - w)
        td = cv.field_of("tissue_delta")
        td[sl] = td[sl] - edema * ring
    if lesion:
        cv.add_lesion(w, sl)
    return w


def _push(coords: torch.Tensor, c, r: float, depth: torch.Tensor):
    """Radial mass effect of an inserted sphere of radius r: sources pulled toward c."""
    cc = torch.tensor(np.asarray(c, np.float32))
    rel = coords - cc
    rho = rel.norm(dim=-1, keepdim=True).clamp_min(1e-3)
    src = (rho ** 3 - r ** 3).clamp_min(0) ** (1 / 3)
    taper = (depth[..., None] / 12.0).clamp(0, 1)  # the skull does not move
    return coords + (src / rho - 1) * rel * taper


def _midline_shift(coords, depth, side: float, mm: float, centre):
    """Subfalcine shift: tissue moves toward -side by ``mm`` near the centre's level."""
    y, z = float(centre[1]), float(centre[2])
    w = torch.exp(-((coords[..., 1] - y) ** 2 + (coords[..., 2] - z) ** 2) / (2 * 35.0 ** 2))
    w = w * torch.exp(-coords[..., 0] ** 2 / (2 * 30.0 ** 2)) * (depth / 15.0).clamp(0, 1)
    out = coords.clone()
    out[..., 0] = out[..., 0] + side * mm * w
    return out


class Finding:
    code = ""

    def __init__(self, rng: np.random.Generator, severity: float | None):
        self.rng = rng
        self.sev = float(rng.uniform(0, 1) ** 1.3 if severity is None else severity)
        self.tpl = load_template()
        self.setup()

    def setup(self):
        pass

    def vent_grow(self, subj) -> float:
        return 0.0

    def deform(self, cv):
        pass

    def paint(self, cv):
        pass

    def site(self, *kinds):
        kind = kinds[int(self.rng.integers(len(kinds)))]
        pts = self.tpl.sites[kind]
        return pts[int(self.rng.integers(len(pts)))].astype(np.float64)


class ICH(Finding):
    code = "ich"

    def setup(self):
        r = self.rng
        self.ml = float(np.exp(np.log(0.8) + self.sev * (np.log(60) - np.log(0.8))))
        self.radius = (3 * self.ml * 1000 / (4 * np.pi)) ** (1 / 3)
        self.hu = float(np.clip(45 + 40 * (0.35 * self.sev + 0.65 * r.uniform()), 45, 85))
        self.centre = self.site("deep_gm", "deep_gm", "lobar", "lobar", "cerebellum")
        self.axes = r.uniform(0.75, 1.3, 3)
        self.axes /= np.prod(self.axes) ** (1 / 3)

    def deform(self, cv):
        if self.radius > 8:
            cv.t_brain = _push(cv.t_brain, self.centre, 0.8 * self.radius, cv.depth)

    def paint(self, cv):
        paint_blob(cv, self.centre, self.radius, self.hu, irregular=0.35, axes=self.axes,
                   edema=float(self.rng.uniform(3, 8)), edema_mm=float(self.rng.uniform(1.5, 4)))
        # heterogeneous clot: a second, smaller, denser or lighter core
        core = self.centre + self.rng.normal(0, self.radius * 0.25, 3)
        paint_blob(cv, core, self.radius * 0.5, self.hu + self.rng.uniform(-8, 8), irregular=0.4)
        cv.info.update(hu=self.hu, radius=self.radius)


class SDH(Finding):
    code = "sdh"

    def setup(self):
        r = self.rng
        self.thick = float(2.5 + 16 * self.sev * r.uniform(0.7, 1.0))
        self.extent = float(np.deg2rad(r.uniform(30, 65)))
        p = self.site("convexity")
        d = p - np.asarray(HEAD_CENTRE)
        self.dir = d / np.linalg.norm(d)
        self.side = float(np.sign(p[0]) or 1.0)
        kind = r.uniform()
        self.hu = float(r.uniform(50, 80) if kind < 0.6 else r.uniform(30, 46) if kind < 0.85
                        else r.uniform(40, 65))
        self.mixed = kind >= 0.85
        self.L = 45.0

    def _thickness(self, coords):
        rel = coords - torch.tensor(HEAD_CENTRE, dtype=torch.float32)
        rn = rel / rel.norm(dim=-1, keepdim=True).clamp_min(1e-3)
        cosang = (rn @ torch.tensor(self.dir, dtype=torch.float32)).clamp(-1, 1)
        ang = torch.arccos(cosang)
        t = self.thick * (1 - (ang / self.extent) ** 2).clamp_min(0) ** 0.7
        t = t * ((coords[..., 0] * self.side - 2) / 3).clamp(0, 1)  # never across the falx
        t = t * ((coords[..., 2] + 20) / 10).clamp(0, 1)            # above the tentorium
        return t, rn

    def deform(self, cv):
        t, rn = self._thickness(cv.t_head)
        d = cv.depth.clamp_min(0)
        shift = torch.minimum(d, t * (self.L - d).clamp_min(0) / (self.L - t).clamp_min(1))
        cv.t_brain = cv.t_brain + rn * shift[..., None]
        if self.thick > 8:
            cv.t_brain = _midline_shift(cv.t_brain, cv.depth, self.side, 0.5 * (self.thick - 6),
                                        self.dir * 60 + np.asarray(HEAD_CENTRE))

    def paint(self, cv):
        coords = cv.mm(None, "head")
        t, _ = self._thickness(coords)
        d = -cv.ch["sdf"]
        pv = cv.px / float(cv.subject.scale.mean())
        w = ((t - d) / pv + 0.5).clamp(0, 1) * (t > 0.3) * ((d + 0.5 * pv) / pv).clamp(0, 1)
        hu = torch.full_like(w, self.hu)
        if self.mixed:
            hu = hu + 10 * _rand_field(self.rng, coords, 12.0)
        cv.overrides.append((w, hu))
        cv.add_lesion(w)
        cv.info.update(hu=self.hu, thickness=self.thick)


class SAH(Finding):
    code = "sah"

    def setup(self):
        r = self.rng
        kind = r.choice(["basal", "sylvian", "convexity"], p=[0.35, 0.35, 0.3])
        side = float(r.choice([-1, 1]))
        if kind == "basal":
            self.centre = np.asarray(SUPRASELLAR_CISTERN) + r.normal(0, 3, 3)
            self.radius = 12 + 18 * self.sev
        elif kind == "sylvian":
            self.centre = np.asarray(SYLVIAN[int(side > 0)]) + r.normal(0, 4, 3)
            self.radius = 10 + 20 * self.sev
        else:
            self.centre = self.site("convexity") * 0.92 + np.asarray(HEAD_CENTRE) * 0.08
            self.radius = 8 + 14 * self.sev
        self.kind = str(kind)
        self.hu = float(r.uniform(42, 55) + 25 * self.sev * r.uniform())

    def paint(self, cv):
        sl, pts = cv.region(self.centre, self.radius * 1.3)
        if sl is None:
            return
        c = torch.tensor(self.centre, dtype=torch.float32)
        q = (pts - c).norm(dim=-1) / self.radius
        f = ((1.15 - q - 0.3 * _rand_field(self.rng, pts, 10.0)) * 3).clamp(0, 1)
        blood = cv.field_of("csf_blood")
        blood[sl] = torch.maximum(blood[sl], f)
        cv.csf_blood_hu = self.hu
        ic = (0.5 - cv.ch["sdf"][sl] / 1.0).clamp(0, 1)
        csf_sub = (ic - cv.ch["gm"][sl] - cv.ch["wm"][sl] - cv.ch["vent"][sl]).clamp_min(0)
        cv.add_lesion((f > 0.4).float() * (csf_sub > 0.3).float(), sl)
        cv.info.update(hu=self.hu, kind=self.kind)


class Infarct(Finding):
    code = "infarct"

    def setup(self):
        r = self.rng
        side = float(r.choice([-1, 1]))
        terr = r.choice(["mca", "aca", "pca"], p=[0.65, 0.15, 0.2])
        if terr == "mca":
            apex = np.array([side * 14, 2.0, -12.0])
            axis = np.array([side * 1.0, r.normal(0, 0.5), r.uniform(0.05, 0.7)])
        elif terr == "aca":
            apex = np.array([side * 4, 22.0, -12.0])
            axis = np.array([side * 0.15, r.normal(-0.2, 0.3), 1.0])
        else:
            apex = np.array([side * 10, -25.0, -10.0])
            axis = np.array([side * 0.25, -1.0, r.normal(0.1, 0.2)])
        self.apex, self.axis = apex, axis / np.linalg.norm(axis)
        self.half = float(np.deg2rad(8 + 30 * self.sev))
        self.rmin = float(r.uniform(12, 30) * (1 - 0.6 * self.sev))
        self.drop = float(4 + 8 * (0.5 * self.sev + 0.5 * r.uniform()))
        self.side, self.terr = side, str(terr)
        self.dense_vessel = terr == "mca" and r.uniform() < 0.3

    def paint(self, cv):
        centre = self.apex + self.axis * 55
        sl, pts = cv.region(centre, 75)
        if sl is None:
            return
        rel = pts - torch.tensor(self.apex, dtype=torch.float32)
        dist = rel.norm(dim=-1).clamp_min(1e-3)
        cosang = (rel @ torch.tensor(self.axis, dtype=torch.float32)) / dist
        ang = torch.arccos(cosang.clamp(-1, 1)) + 0.08 * _rand_field(self.rng, pts, 25.0)
        w = ((self.half - ang) / 0.06).clamp(0, 1) * ((dist - self.rmin) / 3).clamp(0, 1)
        w = w * ((pts[..., 0] * self.side) / 2).clamp(0, 1)
        td = cv.field_of("tissue_delta")
        td[sl] = td[sl] - self.drop * w
        gb = cv.field_of("gw_blend")
        gb[sl] = torch.maximum(gb[sl], w * float(self.rng.uniform(0.6, 1.0)))
        ef = cv.field_of("efface")
        ef[sl] = torch.maximum(ef[sl], w * float(self.rng.uniform(0.4, 0.9)))
        tissue = cv.ch["gm"][sl] + cv.ch["wm"][sl]
        cv.add_lesion(w * (tissue > 0.3).float(), sl)
        if self.dense_vessel:
            a = np.array([self.side * 14, 0, -12.0])
            b = np.array([self.side * 36, 6, -10.0])
            for k in range(6):
                paint_blob(cv, a + (b - a) * k / 5, 1.6, 68.0, lesion=False, irregular=0.0)
        cv.info.update(drop=self.drop, territory=self.terr)


class Mass(Finding):
    code = "mass"

    def setup(self):
        r = self.rng
        self.centre = self.site("lobar")
        self.radius = float(6 + 16 * self.sev)
        self.hu = float(r.uniform(36, 55))
        self.edema_r = self.radius * float(r.uniform(1.5, 2.8))
        self.edema = float(r.uniform(7, 15))
        self.shift = float(np.clip((self.radius - 8) / 12, 0, 1) * r.uniform(2, 10))
        self.side = float(np.sign(self.centre[0]) or 1.0)

    def deform(self, cv):
        cv.t_brain = _push(cv.t_brain, self.centre, self.radius * 0.9, cv.depth)
        if self.shift > 0:
            cv.t_brain = _midline_shift(cv.t_brain, cv.depth, self.side, self.shift, self.centre)

    def paint(self, cv):
        sl, pts = cv.region(self.centre, self.edema_r + 6)
        if sl is None:
            return
        c = torch.tensor(self.centre, dtype=torch.float32)
        q = (pts - c).norm(dim=-1) / self.edema_r + 0.25 * _rand_field(self.rng, pts, 18.0)
        wm = cv.ch["wm"][sl]
        e = ((1 - q) * 4).clamp(0, 1) * (0.35 + 0.65 * wm)
        td = cv.field_of("tissue_delta")
        td[sl] = td[sl] - self.edema * e
        paint_blob(cv, self.centre, self.radius, self.hu, irregular=0.2)
        if self.radius > 14 and self.rng.uniform() < 0.5:  # necrotic centre
            paint_blob(cv, self.centre, self.radius * 0.45, 18.0, lesion=False, irregular=0.3)
        cv.add_lesion((e > 0.5).float() * (wm > 0.4).float(), sl)
        cv.info.update(hu=self.hu, radius=self.radius, shift=self.shift)


class Hydrocephalus(Finding):
    code = "hydrocephalus"

    def vent_grow(self, subj):
        return float(3.5 + 6.5 * self.sev)

    def paint(self, cv):
        subj = cv.subject
        subj.atrophy = 0.0
        ef = cv.field_of("efface")
        ef += float(0.2 + 0.4 * self.sev)
        cv.lesion_from_vent = True


class Atrophy(Finding):
    code = "atrophy"

    def vent_grow(self, subj):
        return float(1.5 + 2.0 * self.sev)

    def paint(self, cv):
        cv.subject.atrophy = float(0.55 + 0.4 * self.sev)
        cv.atrophy_lesion = True


class Lacune(Finding):
    code = "lacune"

    def setup(self):
        self.centre = self.site("deep_gm", "deep_gm", "deep_wm")
        self.radius = float(1.5 + 6 * self.sev)

    def paint(self, cv):
        hu = cv.subject.hu_csf + float(self.rng.uniform(2, 9))
        axes = self.rng.uniform(0.8, 1.25, 3)
        paint_blob(cv, self.centre, self.radius, hu, irregular=0.15, axes=axes)
        cv.info.update(radius=self.radius)


class Calcification(Finding):
    code = "calcification"

    def setup(self):
        r = self.rng
        where = r.choice(["basal_ganglia", "dentate", "choroid", "pineal"], p=[0.5, 0.15, 0.2, 0.15])
        t = self.tpl
        if where == "basal_ganglia":
            pts = [np.asarray(p) for p in GLOBUS_PALLIDUS]
        elif where == "dentate":
            pts = [np.asarray(p) for p in DENTATE]
        elif where == "choroid":
            pts = list(t.landmarks["choroid"])
        else:
            pts = [t.landmarks["pineal"]]
        if r.uniform() < 0.3 and len(pts) > 1:
            pts = pts[:1] if r.uniform() < 0.5 else pts[1:]
        self.spots = [np.asarray(p, np.float64) + r.normal(0, 1.5, 3) for p in pts]
        self.radius = float(1.5 + 3 * self.sev)
        self.hu = float(r.uniform(100, 300))
        self.where = str(where)

    def paint(self, cv):
        for p in self.spots:
            paint_blob(cv, p, self.radius, self.hu, irregular=0.3)
        cv.info.update(where=self.where, hu=self.hu)


FINDINGS = {c.code: c for c in (ICH, SDH, SAH, Infarct, Mass, Hydrocephalus, Lacune,
                                 Calcification, Atrophy)}
