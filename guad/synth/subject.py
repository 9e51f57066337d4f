"""Per-subject variation: who is scanned, how they lie, on which scanner.

``Site`` is a scanner's character (noise, HU offset, slice thickness, gantry tilt);
``Subject`` is one person's draw (size, pose, elastic shape, age-related atrophy and
ventricle size, skull thickness, tissue densities, physiological calcifications).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Site:
    """A scanner's character. ``fov`` is the in-plane field of view (mm)."""

    name: str = "default"
    noise_sd: float = 4.0        # HU, after 5 mm averaging
    hu_offset: float = 0.0       # HU, calibration offset
    thickness: float = 5.0       # mm
    tilt_mean: float = -12.0     # degrees of gantry tilt (head pitch)
    fov: float = 240.0
    coverage: float = 160.0      # mm from skull base to above the vertex
    streaks: float = 1.0         # posterior-fossa beam-hardening strength


DEFAULT_SITE = Site()


@dataclass
class Subject:
    age: float
    scale: np.ndarray            # (3,) template -> subject, per axis (x, y, z)
    angles: np.ndarray           # (3,) degrees: pitch (gantry tilt), roll, yaw
    shift: np.ndarray            # (3,) mm, in-plane offset and slack above the vertex
    elastic: np.ndarray          # (3, 6, 7, 6) mm at coarse control points
    atrophy: float               # 0..1, sulcal widening
    vent_grow: float             # mm, ventricle growth by deformation
    skull: float                 # mm, mean bone thickness
    scalp: float                 # mm
    hu_gm: float
    hu_wm: float
    hu_csf: float
    hu_deep: float               # extra HU of deep gray nuclei
    hu_blood: float              # circulating blood (sinuses, vessels)
    hu_falx: float
    hu_offset: float
    noise_sd: float
    pineal_calc: float           # radius mm (0: none)
    choroid_calc: float
    extra: dict = field(default_factory=dict)


def draw_subject(rng: np.random.Generator, site: Site = DEFAULT_SITE) -> Subject:
    """One person, drawn from ``rng`` (the order of draws is part of the format)."""
    age = float(rng.uniform(18, 92))
    old = np.clip((age - 35) / 55, 0, 1)
    base = rng.uniform(0.88, 0.97)
    scale = base * np.array([rng.normal(1, 0.025), rng.normal(1, 0.025), rng.normal(1, 0.02)])
    angles = np.array([site.tilt_mean + rng.normal(0, 5), rng.normal(0, 2.5), rng.normal(0, 3.5)])
    shift = np.array([rng.normal(0, 5), rng.normal(0, 5), rng.uniform(2, 12)])
    elastic = rng.normal(0, 1, (3, 6, 7, 6))
    atrophy = float(np.clip(old * rng.uniform(0.1, 0.5) + rng.normal(0, 0.04), 0, 0.5))
    vent_grow = float(np.clip(old * rng.uniform(0, 2.5) + rng.normal(0, 0.4), -0.8, 2.6))
    hct = rng.normal(0, 1)
    return Subject(
        age=age, scale=scale, angles=angles, shift=shift, elastic=elastic,
        atrophy=atrophy, vent_grow=vent_grow,
        skull=float(rng.uniform(5.0, 8.0)), scalp=float(rng.uniform(4.0, 8.0)),
        hu_gm=float(rng.uniform(35.5, 40.0)), hu_wm=float(rng.uniform(25.5, 29.5)),
        hu_csf=float(rng.uniform(1.0, 8.0)), hu_deep=float(rng.uniform(1.5, 4.0)),
        hu_blood=float(np.clip(50 + 5 * hct, 42, 62)), hu_falx=float(rng.uniform(45, 62)),
        hu_offset=float(site.hu_offset + rng.normal(0, 1.5)),
        noise_sd=float(site.noise_sd * rng.uniform(0.85, 1.15)),
        pineal_calc=float(rng.uniform(1.0, 2.8) if rng.random() < 0.25 + 0.4 * old else 0.0),
        choroid_calc=float(rng.uniform(1.2, 3.0) if rng.random() < 0.15 + 0.45 * old else 0.0),
    )


def rotation(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation (3, 3) from pitch (about x), roll (about y), yaw (about z), degrees."""
    p, r, y = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(r), 0, np.sin(r)], [0, 1, 0], [-np.sin(r), 0, np.cos(r)]])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx
