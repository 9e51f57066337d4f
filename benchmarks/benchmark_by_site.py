"""A finished `guad benchmark` run split by test site, with the > 55 HU baseline beside it.

    python -m guad benchmark --manifest data/cohorts/demo/manifest.csv --samplers x0 \\
        --t0 cmm=400,fgm=300 --per-class 1000 --ref 200 --out runs/bench_all
    python benchmarks/benchmark_by_site.py --bench runs/bench_all --sampler x0

Reads each model's kept per-scan scores (<bench>/scores), recomputes the baseline's count of
brain voxels above 55 HU (the same pre-processing as the benchmark) and prints, per site and
overall: AUROC critical vs unremarkable with 95% DeLong intervals for the baseline, each model
and the AND ensemble (scaled by the validation normals among the kept scores, as the benchmark
does), and the ensemble minus the baseline with its paired interval. No model is run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from guad.benchmark import bright_voxels, ensemble  # noqa: E402
from guad.io import read_ct  # noqa: E402
from guad.metrics import auroc, auroc_difference  # noqa: E402
from guad.preprocess import preprocess_ct  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default="data/cohorts/demo/manifest.csv")
    ap.add_argument("--bench", required=True, help="the --out folder of a guad benchmark run")
    ap.add_argument("--sampler", default="x0", help="which kept scores, e.g. x0 or x0:4")
    args = ap.parse_args()
    man = Path(args.manifest)
    m = pd.read_csv(man, keep_default_na=False)
    scores = {}
    for k in ("cmm", "fgm"):
        files = sorted((Path(args.bench) / "scores").glob(f"scores_{k}_{args.sampler}_t*.csv"))
        if len(files) != 1:
            raise SystemExit(f"expected one {k} score file for {args.sampler} under {args.bench}/scores, found {files}")
        scores[k] = pd.read_csv(files[0]).set_index("scan_id").score
    kept = m[m.scan_id.isin(scores["cmm"].index) & m.scan_id.isin(scores["fgm"].index)]
    ref = kept[(kept.split == "val") & (kept.label == "normal")]
    test = kept[kept.split == "test"].copy()
    ref_s = {k: scores[k].loc[ref.scan_id].to_numpy(float) for k in scores}
    for k in scores:
        test[k] = scores[k].loc[test.scan_id].to_numpy(float)
    test["ensemble"] = ensemble(ref_s, {k: test[k].to_numpy() for k in scores})
    print(f"{len(test)} test scans, {len(ref)} validation normals as the ensemble's scale; "
          f"counting voxels > 55 HU ...", flush=True)
    # The benchmark keeps model scores, not the baseline: recount it (pre-processing only).
    test["hyper55"] = [bright_voxels(preprocess_ct(read_ct(man.parent / p))) for p in test.path]
    rows = []
    for site, g in [("all", test)] + list(test.groupby("site")):
        pos = (g.label == "critical").to_numpy()
        row = {"site": site, "critical": int(pos.sum()), "unremarkable": int((~pos).sum())}
        for col in ("hyper55", "cmm", "fgm", "ensemble"):
            a, lo, hi = auroc(pos, g[col].to_numpy(float))
            row[col] = f"{a:.3f} [{lo:.3f}-{hi:.3f}]"
        d, lo, hi = auroc_difference(pos, g.ensemble.to_numpy(float), g.hyper55.to_numpy(float))
        row["ensemble - hyper55"] = f"{d:+.3f} [{lo:+.3f} to {hi:+.3f}]"
        rows.append(row)
    print(pd.DataFrame(rows).rename(columns={"hyper55": "> 55 HU"}).to_string(index=False))


if __name__ == "__main__":
    main()
