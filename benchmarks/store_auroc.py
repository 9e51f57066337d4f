"""How well a store's scores separate critical from unremarkable scans, per split and model.

    python benchmarks/store_auroc.py [--db data/demo/demo.duckdb]

Reads the latest run of each model from the store (what the app shows) and prints, per split
and, where a split holds several sites, per site, the AUROC of each model's score for critical
against normal scans (benign findings left out, as in the benchmark), with a 95% DeLong
interval; and the AND ensemble's (`guad.benchmark.ensemble`: each model's score as its mid-rank
quantile among the validation normals, the larger of the two), as `guad benchmark` ranks it.
No model is run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from guad.benchmark import ensemble  # noqa: E402
from guad.dashboard import load_frame  # noqa: E402
from guad.metrics import auroc  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default="data/demo/demo.duckdb")
    args = p.parse_args()
    frame = load_frame(args.db)
    if frame is None:
        print(f"{args.db}: no scored scans", file=sys.stderr)
        return 1
    rows = []
    ref_rows = frame[(frame.split == "val") & (frame.label == "normal")]
    ref = {m: ref_rows[f"score_{m}"].to_numpy(dtype=np.float64) for m in ("cmm", "fgm")}
    groups = []
    for split, g in frame[frame.label.isin(["normal", "critical"])].groupby("split"):
        sites = sorted(g.site.unique())
        groups.append((split, "all" if len(sites) > 1 else sites[0], g))
        if len(sites) > 1:
            groups += [(split, site, g[g.site == site]) for site in sites]
    for split, site, g in groups:
        crit = (g.label == "critical").to_numpy()
        if crit.all() or not crit.any():
            continue
        row = {"split": split, "site": site, "normal": int((~crit).sum()), "critical": int(crit.sum())}
        for m in ("cmm", "fgm"):
            a, lo, hi = auroc(crit, g[f"score_{m}"].to_numpy(dtype=np.float64))
            row[f"{m.upper()} AUROC [95% CI]"] = f"{a:.3f} [{lo:.3f}-{hi:.3f}]"
        if len(ref_rows):
            ens = ensemble(ref, {m: g[f"score_{m}"].to_numpy(dtype=np.float64) for m in ("cmm", "fgm")})
            a, lo, hi = auroc(crit, ens)
            row["AND ensemble [95% CI]"] = f"{a:.3f} [{lo:.3f}-{hi:.3f}]"
        rows.append(row)
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
