"""Which sampler and noise level (t0) make each model's score separate critical from normal
validation scans: AUROC, the share of exact-zero scores and per-finding AUROC.

    python benchmarks/t0_sweep.py x0@100 x0@200 x0@300 x0@400 ddim:10@200 ddim:10@300

Each argument is SAMPLER@T0. Uses the shipped weights (or --cmm / --fgm) on the first --normals
validation normals and --per-finding validation criticals of each finding of a synthetic
cohort; each scan is read and pre-processed once, then reconstructed at every setting with
the same per-scan seeds as `guad score`. This is how the demo's t0 was chosen (README).
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
from guad.benchmark import auroc_rows, load_cases, pick_validation_scans  # noqa: E402
from guad.commands.score import scan_seed  # noqa: E402
from guad.inference import load_models, score_batch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", help="SAMPLER@T0, e.g. x0@300")
    ap.add_argument("--manifest", default="data/cohorts/demo/manifest.csv")
    ap.add_argument("--normals", type=int, default=50)
    ap.add_argument("--per-finding", type=int, default=13)
    ap.add_argument("--cmm")
    ap.add_argument("--fgm")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    man = Path(args.manifest)
    m = pd.read_csv(man, keep_default_na=False)
    v = pick_validation_scans(m, args.normals, args.per_finding)
    models = load_models(args.cmm, args.fgm)
    t = time.perf_counter()
    cases = load_cases(v, models, man.parent)  # each scan read and pre-processed once
    crit = np.array([c.label == "critical" for c in cases])
    seeds = [scan_seed(0, c.scan_id) for c in cases]
    print(f"{len(cases)} validation scans ({crit.sum()} critical), pre-processed in "
          f"{time.perf_counter() - t:.0f} s; torch threads {torch.get_num_threads()}")
    print(f"{'model':5} {'setting':14} {'AUROC [95% CI]':22} {'zero: normal':>12} {'critical':>8}  per finding")
    for setting in args.settings:
        sampler, t0 = setting.split("@")
        for k, lm in models.items():
            sc = []
            for i in range(0, len(cases), args.batch):
                chunk = cases[i:i + args.batch]
                res = score_batch(lm, [c.inputs[k] for c in chunk], seeds[i:i + args.batch], sampler, t0=int(t0))
                sc += [x.score for x in res]
            sc = np.asarray(sc)
            rows = {r["vs unremarkable"]: r for r in auroc_rows(setting, cases, {k: sc}, {})}
            whole = rows.pop("all critical")
            print(f"{k:5} {setting:14} {whole['auroc']:.3f} [{whole['lo']:.3f}-{whole['hi']:.3f}]    "
                  f"{np.mean(sc[~crit] == 0):12.2f} {np.mean(sc[crit] == 0):8.2f}  "
                  + " ".join(f"{f} {r['auroc']:.2f}" for f, r in rows.items()), flush=True)


if __name__ == "__main__":
    main()
