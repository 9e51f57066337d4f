"""How close the fast samplers come to one model's full sampler, scan by scan.

    python benchmarks/sampler_fidelity.py --model fgm --t0 500 --samplers ddim:25,ddim:10,x0 \
        --per-class 10 --out runs/fidelity

AUROC needs hundreds of scans to resolve 0.01, and the full samplers cost hundreds of network
calls a scan, more than a 2-core machine can spend. This asks a cheaper question on the same
scans and seeds: does a fast sampler give the *same reconstruction and score* as the full one?
Per sampler it prints network calls, seconds a scan, the mean absolute difference between its
reconstruction and the full sampler's inside the brain (HU), the Spearman rank correlation of
its scores with the full sampler's, AUROC critical vs unremarkable with its 95% interval, and
its AUROC minus the full sampler's on the same scans with the paired DeLong interval (the
benchmark's "within 0.01 of the full sampler" question; pairing makes that interval far
narrower than either AUROC's when the two samplers rank the scans alike).

Each (sampler, scan) result is kept under --out, so a killed run resumes; the fast samplers run
first, each sampler takes the two classes in turn, and --report-only prints the table over the
scans every sampler has finished, so a run cut short still says what it measured (and on how
many scans).

CMM's full sampler, the paper's ancestral `ddpm`, draws fresh noise at every step, so no
deterministic sampler can follow it scan by scan. `--full-seeds 0,1` runs it with a second noise
seed too and compares that run with the first like a fast sampler: how far the full sampler is
from itself is the floor under any "within 0.01 of the full sampler" claim.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from guad.benchmark import load_cases, pick_test_scans  # noqa: E402
from guad.commands.score import scan_seed  # noqa: E402
from guad.inference import PAPER_SAMPLER, load_models, resolve_precision, score_batch  # noqa: E402
from guad.metrics import auroc, auroc_difference  # noqa: E402
from guad.sampling import SamplerSpec  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default="data/cohorts/demo/manifest.csv")
    ap.add_argument("--model", choices=("cmm", "fgm"), default="fgm")
    ap.add_argument("--t0", type=int, help="default: the config's (the paper's 400 / 500)")
    ap.add_argument("--samplers", default="ddim:25,ddim:10,x0", help="the fast samplers to compare")
    ap.add_argument("--full", help="the reference sampler (default: the model's paper sampler)")
    ap.add_argument("--full-seeds", default="0", metavar="S,S,...",
                    help="noise seeds for the full sampler; the first is the reference, the others are compared "
                         "to it like a fast sampler (how far a stochastic full sampler is from itself)")
    ap.add_argument("--per-class", type=int, default=10, help="test scans per class")
    ap.add_argument("--spread-sites", action="store_true", help="take the scans from the test sites in turn")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--report-only", action="store_true", help="score nothing; report the scans every sampler has")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--shard", default="0/1", metavar="I/N",
                    help="score every N-th picked scan from the I-th: N processes share a machine's cores "
                         "(the pre-processing is single-threaded) and the same --out; then --report-only")
    ap.add_argument("--out", default="runs/fidelity", help="per-scan results, for resuming")
    args = ap.parse_args()

    man = Path(args.manifest)
    m = pd.read_csv(man, keep_default_na=False)
    rows = pick_test_scans(m, args.per_class, args.spread_sites)
    shard, nshard = (int(x) for x in args.shard.split("/"))
    rows = rows.iloc[shard::nshard]
    lm = load_models()[args.model]
    t0 = args.t0 or lm.t0
    # --report-only reads kept results: no scan is read or pre-processed
    cases = None if args.report_only else load_cases(rows, {args.model: lm}, man.parent)
    ids = rows.scan_id.tolist() if cases is None else [c.scan_id for c in cases]
    crit = (rows.label == "critical").to_numpy() if cases is None else np.array([c.label == "critical" for c in cases])
    full = args.full or PAPER_SAMPLER[args.model]
    fast = [s for s in args.samplers.split(",") if s]
    seeds = [int(x) for x in args.full_seeds.split(",")]
    # (sampler, noise seed) runs; the cheap ones first: a run cut short has them all
    runs = [(s, 0) for s in fast] + [(full, sd) for sd in seeds]
    name = {(s, sd): s if sd == 0 else f"{s} seed {sd}" for s, sd in runs}
    samplers = [name[r] for r in runs]
    full = name[(full, seeds[0])]
    prec = resolve_precision(args.precision, lm.device)
    out = Path(args.out) / (f"{args.model}_t{t0}" + ("" if prec == "fp32" else f"_{prec}"))
    out.mkdir(parents=True, exist_ok=True)

    # each class's scans in turn (critical, unremarkable, critical, ...), so a run cut short
    # still has both classes to rank rather than all the criticals and no normal
    turn = np.empty(len(ids), int)
    for c in (True, False):
        turn[crit == c] = np.arange((crit == c).sum())
    results: dict[str, dict] = {}
    for (sampler, seed), s in zip(runs, samplers):
        tag = SamplerSpec.parse(sampler).file_tag() + ("" if seed == 0 else f"_seed{seed}")
        files = [out / f"{tag}_{sid}.npz" for sid in ids]
        todo = [] if cases is None else [i for i, f in enumerate(files) if not f.exists()]
        todo.sort(key=lambda i: (turn[i], not crit[i]))
        t = time.perf_counter()
        for j in range(0, len(todo), args.batch):
            idx = todo[j:j + args.batch]
            res = score_batch(lm, [cases[i].inputs[args.model] for i in idx],
                              [scan_seed(seed, cases[i].scan_id) for i in idx], sampler, t0=t0, precision=prec)
            for i, r in zip(idx, res):
                np.savez(files[i], recon=r.recon, score=r.score, mask=r.mask)
            print(f"{s}: {j + len(idx)}/{len(todo)} scans", flush=True)
        sec = (time.perf_counter() - t) / len(todo) if todo else float("nan")
        results[s] = {"files": files, "sec": sec, "calls": SamplerSpec.parse(sampler).network_calls(t0)}

    # the scans every sampler has finished (all of them, unless a run was cut short)
    have = [i for i in range(len(ids)) if all(results[s]["files"][i].exists() for s in samplers)]
    if not have:
        print("no scan has been scored by every sampler yet")
        return 1
    crit = crit[have]
    for s in samplers:
        got = [np.load(results[s]["files"][i]) for i in have]
        results[s].update(recon=[g["recon"] for g in got], score=np.array([float(g["score"]) for g in got]),
                          mask=[g["mask"] for g in got])
    ref = results[full]
    print(f"\n{args.model.upper()} from t0 = {t0}, {prec}: {crit.sum()} critical and {(~crit).sum()} unremarkable "
          f"test scans (of {len(ids)} picked); the full sampler is {full}")
    table = []
    for s in samplers:
        r = results[s]
        diff = np.mean([np.abs(a - b)[mk].mean() * 100.0
                        for a, b, mk in zip(r["recon"], ref["recon"], ref["mask"])])
        a, lo, hi = auroc(crit, r["score"])
        d, dlo, dhi = auroc_difference(crit, r["score"], ref["score"])
        table.append({"sampler": s, "calls": r["calls"],
                      "s / scan (this run)": round(r["sec"], 2),
                      "recon vs full, MAE HU": round(diff, 2),
                      "Spearman vs full": round(spearmanr(r["score"], ref["score"]).statistic, 3),
                      "AUROC [95% CI]": f"{a:.3f} [{lo:.3f}-{hi:.3f}]",
                      "minus full, paired [95% CI]": "" if s == full else f"{d:+.3f} [{dlo:+.3f} to {dhi:+.3f}]"})
    print(pd.DataFrame(table).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
