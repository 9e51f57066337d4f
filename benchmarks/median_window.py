"""Does the score's median window erase lesions on the small cpu grids?

    python benchmarks/median_window.py --split val
    python benchmarks/median_window.py --split test --per-class 100

The paper's median filter (radius 1, twice) is a 3x3x3 window on ITS grids. On the cpu grids
one voxel is 2x (CMM) to 4x (FGM) larger in-plane and 2x deeper, so the same window spans
8-32x the paper's volume: a bleed one or two voxels thick (a subdural crescent, blood in the
sulci) loses the median vote and is gone before it is scored. Each scan is reconstructed
once per model (the same per-scan seeds as `guad score`) and its difference map scored with
several windows; AUROC critical vs unremarkable with 95% DeLong intervals, the share of exact
zeros, and AUROC per finding.

--split val: the first --normals validation normals and --per-finding criticals of each
finding (the scans of benchmarks/t0_sweep.py). --split test: the first --per-class critical
and unremarkable test scans (the scans of `guad benchmark`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from guad.benchmark import auroc_rows, load_cases, pick_test_scans, pick_validation_scans  # noqa: E402
from guad.commands.score import parse_t0, scan_seed  # noqa: E402
from guad.inference import load_models, score_batch  # noqa: E402
from guad.scoring import MIN_ABS_HU, anomaly_score, difference_map_hu  # noqa: E402

# name -> median radius (X, Y, Z) in voxels; Z is the slice axis.
WINDOWS = {"3x3x3 (paper)": (1, 1, 1), "3x3x1 (in-plane)": (1, 1, 0),
           "1x1x3 (across slices)": (0, 0, 1), "none": (0, 0, 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default="data/cohorts/demo/manifest.csv")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--normals", type=int, default=50)
    ap.add_argument("--per-finding", type=int, default=13)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--sampler", default="x0")
    ap.add_argument("--t0", default="cmm=400,fgm=300", help="per model, as `guad score --t0`")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", metavar="CSV", help="per-scan scores of every model and window")
    args = ap.parse_args()
    man = Path(args.manifest)
    m = pd.read_csv(man, keep_default_na=False)
    pick = (pick_validation_scans(m, args.normals, args.per_finding) if args.split == "val"
            else pick_test_scans(m, args.per_class))
    models = load_models()
    t0 = parse_t0(args.t0, models)
    t = time.perf_counter()
    cases = load_cases(pick, models, man.parent)
    crit = np.array([c.label == "critical" for c in cases])
    seeds = [scan_seed(0, c.scan_id) for c in cases]
    print(f"{len(cases)} {args.split} scans ({crit.sum()} critical), pre-processed in "
          f"{time.perf_counter() - t:.0f} s; {args.sampler}, t0 {args.t0}; torch threads {torch.get_num_threads()}")
    per_scan = pd.DataFrame({"scan_id": [c.scan_id for c in cases], "label": [c.label for c in cases],
                             "finding": [c.finding for c in cases]})
    print(f"{'model':5} {'median window':22} {'AUROC [95% CI]':22} {'zero: normal':>12} {'critical':>8}  per finding")
    for k, lm in models.items():
        diffs = []
        for i in range(0, len(cases), args.batch):
            chunk = cases[i:i + args.batch]
            res = score_batch(lm, [c.inputs[k] for c in chunk], seeds[i:i + args.batch], args.sampler,
                              t0=t0[k])
            diffs += [difference_map_hu(r.image, r.recon, r.mask) for r in res]
        for name, radius in WINDOWS.items():
            sc = np.array([anomaly_score(d, MIN_ABS_HU[k], lm.min_voxels, radius)[0] for d in diffs])
            per_scan[f"{k} {name}"] = sc
            rows = {r["vs unremarkable"]: r for r in auroc_rows(name, cases, {k: sc}, {})}
            whole = rows.pop("all critical")
            print(f"{k:5} {name:22} {whole['auroc']:.3f} [{whole['lo']:.3f}-{whole['hi']:.3f}]    "
                  f"{np.mean(sc[~crit] == 0):12.2f} {np.mean(sc[crit] == 0):8.2f}  "
                  + " ".join(f"{f} {r['auroc']:.2f}" for f, r in rows.items()), flush=True)
    per_scan = per_scan.merge(pick[["scan_id", "site", "lesion_ml"]], on="scan_id")
    size_table(per_scan)
    if args.out:
        per_scan.to_csv(args.out, index=False)
        print(f"per-scan scores: {args.out}")


def size_table(per_scan: pd.DataFrame) -> None:
    """Share of scans each model flags (score > 0, the paper's window) by lesion volume."""
    paper = next(iter(WINDOWS))
    crit = per_scan[per_scan.label == "critical"].copy()
    crit["lesion_ml"] = pd.to_numeric(crit.lesion_ml, errors="coerce")
    crit["volume"] = pd.cut(crit.lesion_ml, [0, 2, 10, 30, np.inf], labels=["<=2 ml", "2-10 ml", "10-30 ml", ">30 ml"])
    unrem = per_scan[per_scan.label != "critical"]
    print(f"\nshare with a score > 0 ({paper} window)   n   CMM   FGM")
    print(f"{'unremarkable':38} {len(unrem):4} {np.mean(unrem[f'cmm {paper}'] > 0):5.2f} {np.mean(unrem[f'fgm {paper}'] > 0):5.2f}")
    for col in ("volume", "finding"):
        for g, grp in crit.groupby(col, observed=True):
            print(f"{'critical, ' + str(g):38} {len(grp):4} {np.mean(grp[f'cmm {paper}'] > 0):5.2f} "
                  f"{np.mean(grp[f'fgm {paper}'] > 0):5.2f}   (median {grp.lesion_ml.median():.1f} ml)")


if __name__ == "__main__":
    main()
