"""The speed/quality benchmark: every sampler's network calls, seconds per scan and AUROC
(critical vs unremarkable; per model, per finding, ensemble), beside two trivial baselines.

    python -m guad benchmark --manifest data/cohorts/demo/manifest.csv \
        --samplers x0,ddim:5,ddim:20,paper --per-class 100 --out runs/benchmark

`paper` means each model's paper sampler (ddpm, 400 calls, for CMM; ddim, 500 calls, for FGM).
Test scans: up to --per-class critical and --per-class unremarkable of the test split (in
scan-id order, so the same manifest gives the same set; with --spread-sites the sites take
turns). Validation normals (--ref) set the ensemble's scale; training normals (--train) make the
template baseline. Besides the pooled table it prints, per sampler, the AUROCs within each test
site with the ensemble minus the site's better baseline, and with --out writes per_scan.csv
(every scan's site, label and every method's score) and by_site.csv.
"""

from __future__ import annotations

import sys
from pathlib import Path

HELP = "speed/quality benchmark of the samplers (AUROC with 95% CI) against trivial baselines"


def add_arguments(p) -> None:
    p.add_argument("--manifest", required=True, help="synthetic cohort manifest (with a test split)")
    p.add_argument("--cmm", help="CMM checkpoint (default: shipped weights)")
    p.add_argument("--fgm", help="FGM checkpoint (default: shipped weights)")
    p.add_argument("--samplers", default="x0,ddim:5,ddim:20,paper", help="comma-separated (default x0,ddim:5,ddim:20,paper)")
    p.add_argument("--per-class", type=int, default=100, help="critical and unremarkable test scans each (default 100)")
    p.add_argument("--spread-sites", action="store_true",
                   help="take each class's test scans from the sites in turn (default: the first in scan-id order)")
    p.add_argument("--ref", type=int, default=50, help="validation normals for the ensemble scale (default 50)")
    p.add_argument("--train", type=int, default=50, help="training normals for the template baseline (default 50)")
    p.add_argument("--t0", default=None, help="noise level: N for both, or cmm=N,fgm=M (default: each config's)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="network arithmetic for every sampler (default auto: bf16 on a GPU, fp32 on the CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="folder for benchmark.csv (every row) and summary.csv; each sampler's scores "
                                 "are kept under <out>/scores as they finish, so a rerun resumes")


def run(args) -> int:
    import pandas as pd
    import torch

    from guad import benchmark
    from guad.inference import load_models

    torch.set_grad_enabled(False)
    manifest = Path(args.manifest)
    m = pd.read_csv(manifest, dtype=str, keep_default_na=False).sort_values("scan_id")
    pick = benchmark.pick_test_scans(m, args.per_class, args.spread_sites)
    ref = m[(m.split == "val") & (m.label == "normal")].head(args.ref)
    train = m[(m.split == "train") & (m.label == "normal")].head(args.train)
    models = load_models(args.cmm, args.fgm, device=args.device)
    log = benchmark._log
    log(f"loading {len(pick)} test, {len(ref)} reference and {len(train)} training scans")
    cases = benchmark.load_cases(pick, models, manifest.parent, log)
    ref_c = benchmark.load_cases(ref, models, manifest.parent, log)
    train_c = benchmark.load_cases(train, models, manifest.parent, log)
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    from guad.commands.score import parse_t0
    result = benchmark.run(cases, ref_c, train_c, models, samplers, batch=args.batch, log=log,
                          t0=parse_t0(args.t0, models), precision=args.precision,
                          cache_dir=Path(args.out) / "scores" if args.out else None)
    table = result.table
    summ = benchmark.summary(table)
    sites = pd.concat([benchmark.by_site(result.per_scan, s).assign(sampler=s) for s in samplers], ignore_index=True)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_rows", 200):
        print(summ.to_string(index=False))
        print()
        print(benchmark.per_finding(table).to_string())
        print()
        print("within each test site (critical vs unremarkable):")
        print(sites.to_string(index=False))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "benchmark.csv", index=False)
        summ.to_csv(out / "summary.csv", index=False)
        result.per_scan.to_csv(out / "per_scan.csv", index=False)
        sites.to_csv(out / "by_site.csv", index=False)
        print(f"wrote benchmark.csv, summary.csv, per_scan.csv and by_site.csv to {out}", file=sys.stderr)
    return 0
