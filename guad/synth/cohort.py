"""Cohorts: presets (splits, sites, counts, finding mix), byte-stable writing, manifest.

Each scan is fully described by its manifest row (seed, finding, site) plus the preset's
matrix size, so ``remake_scan(row)`` rebuilds it without the file.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import nibabel as nib
import numpy as np

from guad.errors import InputError
from guad.synth.findings import BENIGN, CRITICAL
from guad.synth.generator import SynthScan, generate_scan
from guad.synth.subject import Site

# `size` (the in-plane matrix) is beyond the column list: with seed, finding and site
# it is what remaking one scan alone needs (remake_scan).
COLUMNS = ["scan_id", "path", "site", "split", "label", "finding", "lesion_ml", "seed", "size"]

# Scanner characters. "internal" is where train/val come from.
SITES: dict[str, Site] = {
    "internal": Site("internal", noise_sd=4.0, hu_offset=0.0, thickness=5.0, tilt_mean=-12.0),
    "siteA": Site("siteA", noise_sd=4.0, hu_offset=0.0, thickness=5.0, tilt_mean=-12.0),
    "siteB": Site("siteB", noise_sd=5.5, hu_offset=3.0, thickness=5.0, tilt_mean=-4.0, streaks=1.5),
    "siteC": Site("siteC", noise_sd=3.0, hu_offset=-2.5, thickness=4.0, tilt_mean=-18.0, streaks=0.7),
}


@dataclass(frozen=True)
class Split:
    """A group of scans: ``mix`` maps finding ('' = normal) to a count."""

    name: str          # scan-id prefix
    split: str         # train / val / test
    site: str
    mix: dict


@dataclass(frozen=True)
class Preset:
    name: str
    size: int
    groups: tuple
    seed_stride: int = 100_000  # seeds of group g start at (g + 1) * stride + base seed
    sites: dict = field(default_factory=lambda: dict(SITES))

    @property
    def n_scans(self) -> int:
        return sum(sum(g.mix.values()) for g in self.groups)


def _er_mix(n: int) -> dict:
    """Consecutive ER-like mix: ~10 % critical, ~20 % benign, the rest normal."""
    crit, ben = round(0.10 * n), round(0.20 * n)
    mix = {"": n - crit - ben}
    for i, f in enumerate(CRITICAL):
        mix[f] = crit // len(CRITICAL) + (i < crit % len(CRITICAL))
    for i, f in enumerate(BENIGN):
        mix[f] = ben // len(BENIGN) + (i < ben % len(BENIGN))
    return mix


def _each(n_normal: int, n_crit: int, n_ben: int) -> dict:
    mix = {"": n_normal}
    mix.update({f: n_crit for f in CRITICAL})
    mix.update({f: n_ben for f in BENIGN})
    return mix


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", 64, (
        Split("train", "train", "internal", {"": 6}),
        Split("val", "val", "internal", {"": 3, "ich": 1, "infarct": 1}),
        Split("siteA", "test", "siteA", _each(2, 1, 1)),
        Split("siteB", "test", "siteB", {"": 2, "sdh": 1, "lacune": 1}),
        Split("siteC", "test", "siteC", {"": 2, "sah": 1, "calcification": 1}),
    )),
    "demo": Preset("demo", 256, (
        Split("train", "train", "internal", {"": 800}),
        Split("val", "val", "internal", {"": 200, "ich": 50, "sdh": 25, "sah": 25, "infarct": 50}),
        Split("siteA", "test", "siteA", _each(150, 20, 20)),           # enriched internal test
        Split("siteB", "test", "siteB", _er_mix(400)),                  # consecutive ER mix
        Split("siteC", "test", "siteC", _each(100, 15, 15)),
    )),
    "benchmark": Preset("benchmark", 256, (
        Split("train", "train", "internal", {"": 2000}),
        Split("val", "val", "internal", {"": 400, "ich": 100, "sdh": 50, "sah": 50, "infarct": 100}),
        Split("siteA", "test", "siteA", _each(600, 100, 100)),
        Split("siteB", "test", "siteB", _er_mix(2000)),
        Split("siteC", "test", "siteC", _each(300, 50, 50)),
    )),
}


def label_of(finding: str) -> str:
    return "critical" if finding in CRITICAL else "benign" if finding in BENIGN else "normal"


def plan(preset: Preset, seed: int = 0, limit: int | None = None) -> list[dict]:
    """Manifest rows (without lesion_ml) in a fixed order; ``limit`` caps each group."""
    rows = []
    for g_i, g in enumerate(preset.groups):
        items = [f for f, c in g.mix.items() for _ in range(c)]
        # interleave deterministically so a consecutive mix is not sorted by finding
        order = np.random.default_rng([seed, g_i, 99]).permutation(len(items))
        items = [items[i] for i in order]
        if limit is not None:
            items = items[:limit]
        for j, f in enumerate(items):
            sid = f"{g.name}-{j + 1:05d}"
            rows.append({"scan_id": sid, "path": f"images/{sid}.nii.gz", "site": g.site,
                         "split": g.split, "label": label_of(f), "finding": f,
                         "lesion_ml": "",
                         "seed": seed * 10_000_000 + (g_i + 1) * preset.seed_stride + j,
                         "size": preset.size})
    return rows


def remake_scan(row: dict, size: int | None = None, sites: dict | None = None,
                noise_seed: int | None = None) -> SynthScan:
    """The scan a manifest row describes (``size`` defaults to the row's or 256); with
    ``noise_seed``, the same patient rescanned: new scanner noise, same everything else."""
    sites = sites or SITES
    site_name = str(row.get("site", "internal"))
    if site_name not in sites:
        raise InputError(None, f"unknown synthetic site {site_name!r} in row {row.get('scan_id')}")
    finding = row.get("finding") or None
    if isinstance(finding, float):  # pandas NaN for an empty cell
        finding = None
    size = int(size or row.get("size") or 256)
    return generate_scan(int(row["seed"]), finding=finding, size=size, site=sites[site_name],
                         noise_seed=noise_seed)


def nifti_bytes(data: np.ndarray, affine: np.ndarray) -> bytes:
    """A .nii.gz as bytes, identical for identical inputs (gzip mtime fixed at 0)."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    raw = img.to_bytes()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6, filename="") as gz:
        gz.write(raw)
    return buf.getvalue()


def write_scan(scan: SynthScan, out: Path, scan_id: str) -> float:
    hu = np.round(scan.hu).astype(np.int16)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "images" / f"{scan_id}.nii.gz").write_bytes(nifti_bytes(hu, scan.affine))
    if scan.finding:
        (out / "lesions").mkdir(parents=True, exist_ok=True)
        les = scan.truth["lesion"].astype(np.uint8)
        (out / "lesions" / f"{scan_id}.nii.gz").write_bytes(nifti_bytes(les, scan.affine))
    return scan.lesion_ml


def read_manifest(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_manifest(rows: list[dict], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in COLUMNS})
    tmp.replace(path)


def write_cohort(preset: Preset | str, out: str | Path, seed: int = 0, size: int | None = None,
                 limit: int | None = None, progress: bool = True) -> list[dict]:
    """Write images, lesion masks and manifest.csv; resumes where a manifest row is done."""
    if isinstance(preset, str):
        preset = PRESETS[preset]
    if size:
        preset = replace(preset, size=int(size))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = plan(preset, seed=seed, limit=limit)
    mpath = out / "manifest.csv"
    done = {}
    if mpath.exists():
        for r in read_manifest(mpath):
            if r.get("lesion_ml", "") != "":
                done[r["scan_id"]] = r
    from tqdm import tqdm
    finished = []
    it = tqdm(rows, desc=f"synth {preset.name}", disable=not progress, unit="scan")
    for i, row in enumerate(it):
        prev = done.get(row["scan_id"])
        if prev and str(prev["seed"]) == str(row["seed"]) and prev["finding"] == row["finding"] \
                and prev["site"] == row["site"] and (out / row["path"]).exists():
            row["lesion_ml"] = prev["lesion_ml"]
        else:
            scan = remake_scan(row, size=preset.size, sites=preset.sites)
            row["lesion_ml"] = f"{write_scan(scan, out, row['scan_id']):.3f}"
        finished.append(row)
        if (i + 1) % 50 == 0:  # resumable: the manifest lists what is written
            write_manifest(finished, mpath)
    write_manifest(finished, mpath)
    (out / "preset.txt").write_text(f"preset={preset.name}\nsize={preset.size}\nseed={seed}\n")
    return finished
