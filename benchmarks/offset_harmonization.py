"""Are scanner HU offsets what makes normal scans score high? Score test scans as they are and
with each scan's global parenchyma offset removed, and compare AUROC (critical vs normal).

    python benchmarks/offset_harmonization.py [--normals-per-site 40] [--per-site-finding 6]

Why: the highest-scoring normal test scans of the demo come from sites B and C, whose synthetic
scanners read +3 and -2.5 HU off the training site, and their FGM maps are one-signed over
large interior regions. If the models' failure to follow a global offset were the main source
of false positives, removing the offset before the models would raise AUROC clearly.

Offset of a scan: the median HU of the voxels its anatomy map calls parenchyma (label 1, FGM
grid of the config) minus the same median over the first 40 training normals. "Harmonised"
inputs are the model inputs shifted by minus that offset inside the brain mask (clipped to the
window), for both models. Scans: the first N normals of each test site and the first K
criticals of each (site, finding), so sites weigh equally; the same per-scan seeds as
`guad score`, x0 from the demo's t0. This is an experiment, not part of the product's
pre-processing (README: result and decision).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from guad.benchmark import auroc_rows, load_cases  # noqa: E402
from guad.commands.score import parse_t0, scan_seed  # noqa: E402
from guad.inference import ModelInput, load_models, score_batch  # noqa: E402
from guad.preprocess.anatomy import PARENCHYMA  # noqa: E402
from guad.preprocess.pipeline import model_to_hu  # noqa: E402


def parenchyma_median_hu(fgm: ModelInput) -> float:
    """Median HU of the parenchyma-labelled voxels of an FGM model input."""
    return float(np.median(model_to_hu(fgm.image[0])[fgm.anatomy[0] == PARENCHYMA]))


def shifted(mi: ModelInput, offset_hu: float) -> ModelInput:
    """The model input with `offset_hu` removed inside the brain, clipped to the window."""
    img = np.where(mi.mask[None], np.clip(mi.image - offset_hu / 100.0, 0.0, 1.0), 0.0)
    return dataclasses.replace(mi, image=img.astype(np.float32))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default="data/cohorts/demo/manifest.csv")
    ap.add_argument("--normals-per-site", type=int, default=40)
    ap.add_argument("--per-site-finding", type=int, default=6)
    ap.add_argument("--t0", default="cmm=400,fgm=300")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    man = Path(args.manifest)
    m = pd.read_csv(man, keep_default_na=False)
    test = m[m.split == "test"]
    rows = pd.concat([test[test.label == "normal"].groupby("site").head(args.normals_per_site),
                      test[test.label == "critical"].groupby(["site", "finding"]).head(args.per_site_finding)])
    train = m[(m.split == "train") & (m.label == "normal")].head(40)
    models = load_models()
    t0 = parse_t0(args.t0, models)
    start = time.perf_counter()
    ref = float(np.median([parenchyma_median_hu(c.inputs["fgm"]) for c in load_cases(train, models, man.parent)]))
    cases = load_cases(rows, models, man.parent)
    site = dict(zip(m.scan_id, m.site))
    offsets = np.array([parenchyma_median_hu(c.inputs["fgm"]) - ref for c in cases])
    crit = np.array([c.label == "critical" for c in cases])
    print(f"{len(cases)} test scans ({crit.sum()} critical), pre-processed in {time.perf_counter() - start:.0f} s; "
          f"training parenchyma median {ref:.2f} HU")
    print("offset (HU) of each site's scans:", pd.Series(offsets).groupby([site[c.scan_id] for c in cases])
          .agg(["mean", "std"]).round(2).to_dict("index"))
    seeds = [scan_seed(0, c.scan_id) for c in cases]
    for name, lm in models.items():
        for harmonised in (False, True):
            scores = []
            for i in range(0, len(cases), args.batch):
                chunk = cases[i:i + args.batch]
                inputs = [shifted(c.inputs[name], o) if harmonised else c.inputs[name]
                          for c, o in zip(chunk, offsets[i:i + args.batch])]
                scores += [r.score for r in score_batch(lm, inputs, seeds[i:i + args.batch], "x0", t0=t0[name])]
            s = np.asarray(scores)
            by = {r["vs unremarkable"]: r for r in auroc_rows("x0", cases, {name: s}, {})}
            whole = by.pop("all critical")
            print(f"{name} {'harmonised' if harmonised else 'as scanned':10} AUROC {whole['auroc']:.3f} "
                  f"[{whole['lo']:.3f}-{whole['hi']:.3f}]  zero scores normal/critical "
                  f"{np.mean(s[~crit] == 0):.2f}/{np.mean(s[crit] == 0):.2f}  "
                  + " ".join(f"{f} {r['auroc']:.2f}" for f, r in by.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
