"""The speed/quality benchmark of the samplers, against two trivial baselines.

For every sampler: network calls, seconds per scan per model, and AUROC (critical vs
unremarkable) per model, per finding and for the ensemble; plus two baselines with no model:
  - `hyper55`: the count of brain voxels above 55 HU (FGM grid) - finds blob-like bleeds;
  - `template`: voxelwise deviation from the mean of (registered) training normals, with the
    model's own post-processing (threshold, median x2, small objects) on the model's grid.
    The pre-processing's fixed field of view centred on the brain is the registration.

Ensemble score: each model's score becomes its empirical quantile among the reference
validation normals, and the scan takes the larger of the two. Thresholding that at q excludes
a scan only when both models are under their q-quantile: the paper's AND rule, with the
two cut-offs tied by quantile. Its AUROC therefore ranks the AND ensemble.

Every AUROC carries its 95% DeLong interval (guad.metrics.auroc).
Each sampler row also carries its AUROC minus the better baseline's on the same scans, with the
paired interval (the target: the ensemble >= 0.10 above it), and `by_site` gives the same
within each test site: a raw-HU baseline can rank well within one scanner and badly pooled.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from guad.commands.score import scan_seed
from guad.inference import PAPER_SAMPLER, LoadedModel, ModelInput, model_input, resolve_precision, score_batch
from guad.metrics import auroc, auroc_difference
from guad.preprocess.pipeline import model_to_hu
from guad.sampling import SamplerSpec
from guad.scoring import MIN_ABS_HU, anomaly_score


@dataclass
class Case:
    scan_id: str
    split: str
    label: str
    finding: str
    inputs: dict[str, ModelInput]  # model -> its input
    hyper55: float
    site: str = ""


def pick_test_scans(manifest: pd.DataFrame, per_class: int, spread_sites: bool = False) -> pd.DataFrame:
    """The benchmark's test scans: the first `per_class` critical and unremarkable (normal or
    benign) test scans, in scan_id order. The demo manifest lists sites in turn, so a small
    `per_class` takes one site only; with `spread_sites` each class takes its scans from the
    sites in turn (the first of every site, then the second, ...), so every site is in the set
    and no site gives more than its share while it still has scans."""
    test = manifest[manifest.split == "test"].sort_values("scan_id")
    crit, unrem = test[test.label == "critical"], test[test.label != "critical"]
    if spread_sites and "site" in test:
        def spread(g: pd.DataFrame) -> pd.DataFrame:
            turn = g.groupby("site").cumcount()  # 0 for each site's first scan, 1 for its second, ...
            return g.assign(_turn=turn).sort_values(["_turn", "site", "scan_id"]).drop(columns="_turn")
        crit, unrem = spread(crit), spread(unrem)
    return pd.concat([crit.head(per_class), unrem.head(per_class)])


def pick_validation_scans(manifest: pd.DataFrame, normals: int, per_finding: int) -> pd.DataFrame:
    """The sweeps' validation scans: the first `normals` normals and `per_finding` criticals of
    each finding (benchmarks/t0_sweep.py, median_window.py)."""
    v = manifest[manifest.split == "val"]
    return pd.concat([v[v.label == "normal"].head(normals),
                      v[v.label == "critical"].groupby("finding").head(per_finding)])


def bright_voxels(pp) -> float:
    """The first baseline: brain voxels above 55 HU on the FGM grid of a `Preprocessed` scan."""
    return float(((model_to_hu(pp.fgm) > 55.0) & pp.fgm_mask).sum())


def load_cases(rows: pd.DataFrame, models: dict[str, LoadedModel], root, log=print) -> list[Case]:
    """Read and pre-process each scan once; keep only what the benchmark needs."""
    from guad.io import read_ct
    from guad.preprocess import preprocess_ct

    cases = []
    for r in rows.itertuples():
        path = root / r.path
        try:
            pp = preprocess_ct(read_ct(path))
        except Exception as exc:  # noqa: BLE001 - a bad scan is reported and left out
            log(f"skipped {r.scan_id}: {exc}")
            continue
        cases.append(Case(r.scan_id, r.split, r.label, r.finding or "",
                          {m: model_input(pp, lm.cfg) for m, lm in models.items()}, bright_voxels(pp),
                          str(getattr(r, "site", "") or "")))
    return cases


def template_scores(train: list[Case], cases: list[Case], models: dict[str, LoadedModel]) -> dict[str, np.ndarray]:
    """Baseline: |input - mean training normal| with each model's post-processing."""
    out = {}
    for m, lm in models.items():
        mean = np.mean([c.inputs[m].image[0] for c in train], axis=0)
        s = []
        for c in cases:
            diff = (c.inputs[m].image[0] - mean) * 100.0 * c.inputs[m].mask
            s.append(anomaly_score(diff, MIN_ABS_HU[m], lm.min_voxels)[0])
        out[m] = np.asarray(s)
    return out


def ensemble(ref: dict[str, np.ndarray], s: dict[str, np.ndarray]) -> np.ndarray:
    """max over models of the score's mid-rank quantile among the reference normals.

    Mid-rank, because the paper's score is often exactly 0 (nothing left after the threshold
    and the 75-voxel rule): with "fraction <= score" every 0 would map to 1.0 when most
    reference scores are 0, and the max would drown the other model."""
    q = []
    for m in s:
        r = np.sort(ref[m])
        lo = np.searchsorted(r, s[m], side="left")
        hi = np.searchsorted(r, s[m], side="right")
        q.append((lo + hi) / 2.0 / max(len(r), 1))
    return np.max(q, axis=0)


def auroc_rows(method: str, cases: list[Case], scores: dict[str, np.ndarray], extra: dict) -> list[dict]:
    """One row per (model or ensemble) x (all critical, each finding) vs unremarkable."""
    labels = np.array([c.label for c in cases])
    findings = np.array([c.finding for c in cases])
    unrem = labels != "critical"
    rows = []
    for name, s in scores.items():
        groups = [("all critical", labels == "critical")] + [
            (f, findings == f) for f in sorted(set(findings[labels == "critical"]))]
        for g, sel in groups:
            keep = sel | unrem
            auc, lo, hi = auroc(sel[keep], s[keep])
            rows.append({"method": method, "model": name, "vs unremarkable": g, "n_pos": int(sel.sum()),
                         "n_neg": int(unrem.sum()), "auroc": auc, "lo": lo, "hi": hi, **extra.get(name, {})})
    return rows


@dataclass
class BenchmarkResult:
    table: pd.DataFrame  # one row per method x model x (all critical | finding): AUROC, interval, calls, s/scan
    per_scan: pd.DataFrame  # one row per test scan: scan_id, site, label, finding and every method's score


def run(cases: list[Case], ref: list[Case], train: list[Case], models: dict[str, LoadedModel],
        samplers: list[str], batch: int = 8, seed: int = 0, log=print,
        t0: dict[str, int] | None = None, precision: str = "auto", cache_dir=None) -> BenchmarkResult:
    """The whole table. `cases`: test scans; `ref`: validation normals (ensemble scale);
    `train`: training normals (template baseline). With `cache_dir`, each sampler and model's
    scores are written there as they finish and read back on a rerun with the same scans,
    checkpoint, t0, precision and seed: a killed multi-hour run (the paper samplers) resumes."""
    rows = []
    # baselines (no network)
    hyper = np.array([c.hyper55 for c in cases])
    rows += auroc_rows("baseline: voxels > 55 HU", cases, {"-": hyper}, {"-": {"calls": 0}})
    t_all = template_scores(train, cases + ref, models)
    n = len(cases)
    t_case = {m: v[:n] for m, v in t_all.items()}
    t_ref = {m: v[n:] for m, v in t_all.items()}
    template = {**t_case, "ensemble": ensemble(t_ref, t_case)}
    rows += auroc_rows("baseline: template deviation", cases, template, {m: {"calls": 0} for m in t_case})
    baselines = {"hyper55": hyper, **{f"template_{m}": v for m, v in template.items()}}
    everyone = cases + ref
    by_sampler = {}
    for name in samplers:
        scores, extra = {}, {}
        for m, lm in models.items():
            spec = SamplerSpec.parse(PAPER_SAMPLER[m] if name == "paper" else name)
            t0_m = (t0 or {}).get(m) or lm.t0
            prec = resolve_precision(precision, lm.device)
            # file_tag carries run_params: older DDIM scores are not read back
            cache = (Path(cache_dir) / f"scores_{m}_{spec.file_tag()}_t{t0_m}_{prec}_seed{seed}.csv"
                     if cache_dir else None)
            ids = [c.scan_id for c in everyone]
            done = pd.read_csv(cache, dtype={"scan_id": str}) if cache and cache.exists() else None
            if done is not None and done.scan_id.tolist() == ids and lm.hash == done.checkpoint_hash.iloc[0]:
                vals, sec = done.score.tolist(), float(done.s_per_scan.iloc[0])  # resumed: scored before
                log(f"{name} {m}: scores read back from {cache}")
            else:
                vals, started = [], time.perf_counter()
                for i in tqdm(range(0, len(everyone), batch), desc=f"{name} {m}", unit="batch",
                              file=sys.stderr, disable=None):
                    chunk = everyone[i: i + batch]
                    res = score_batch(lm, [c.inputs[m] for c in chunk], [scan_seed(seed, c.scan_id) for c in chunk],
                                      str(spec), t0=t0_m, precision=precision)
                    vals += [r.score for r in res]
                sec = (time.perf_counter() - started) / len(everyone)
                if cache:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    pd.DataFrame({"scan_id": ids, "score": vals, "s_per_scan": sec,
                                  "checkpoint_hash": lm.hash}).to_csv(cache, index=False)
            scores[m] = np.asarray(vals)
            extra[m] = {"sampler": str(spec), "t0": t0_m, "precision": prec, "calls": spec.network_calls(t0_m), "s_per_scan": sec}
            log(f"{name} {m}: {sec:.2f} s/scan, {spec.network_calls(t0_m)} calls, {len(everyone)} scans")
        case_s = {m: v[:n] for m, v in scores.items()}
        ref_s = {m: v[n:] for m, v in scores.items()}
        extra["ensemble"] = {"calls": sum(e["calls"] for e in extra.values()),
                             "s_per_scan": sum(e["s_per_scan"] for e in extra.values())}
        by_sampler[name] = {**case_s, "ensemble": ensemble(ref_s, case_s)}
        rows += auroc_rows(f"sampler: {name}", cases, by_sampler[name], extra)
    table = add_baseline_difference(pd.DataFrame(rows), cases, by_sampler, baselines)
    if "paper" in by_sampler:
        table = add_paired_difference(table, cases, by_sampler, "paper")
    per_scan = pd.DataFrame({"scan_id": [c.scan_id for c in cases], "site": [c.site for c in cases],
                             "label": [c.label for c in cases], "finding": [c.finding for c in cases],
                             **baselines,
                             **{f"{name}_{m}": v for name, s in by_sampler.items() for m, v in s.items()}})
    return BenchmarkResult(table, per_scan)


def better_baseline(pos: np.ndarray, baselines: dict[str, np.ndarray]) -> str:
    """The name of the baseline score with the highest AUROC on these scans (pos: critical)."""
    return max(baselines, key=lambda b: auroc(pos, baselines[b])[0])


def _sampler_rows(table: pd.DataFrame, cases: list[Case], by_sampler: dict[str, dict[str, np.ndarray]]):
    """Each sampler row of an auroc_rows table, as (row index, sampler, model, keep): keep selects
    the scans that row compares (its criticals - all, or one finding's - and every unremarkable)."""
    labels = np.array([c.label for c in cases])
    findings = np.array([c.finding for c in cases])
    unrem = labels != "critical"
    for name, scores in by_sampler.items():
        for model in scores:
            for i in table.index[(table.method == f"sampler: {name}") & (table.model == model)]:
                g = table.at[i, "vs unremarkable"]
                sel = labels == "critical" if g == "all critical" else findings == g
                yield i, name, model, sel | unrem


def add_baseline_difference(table: pd.DataFrame, cases: list[Case], by_sampler: dict[str, dict[str, np.ndarray]],
                            baselines: dict[str, np.ndarray]) -> pd.DataFrame:
    """Columns baseline, b_auroc, b_lo, b_hi on each sampler's rows: its AUROC minus the better
    baseline's on the same scans (all critical, and each finding; the better of every baseline
    score on that group, so the comparison is never against a weak one), with the paired
    DeLong interval. The benchmark's target is the ensemble's b_auroc >= 0.10 over all criticals."""
    crit = np.array([c.label == "critical" for c in cases])
    table = table.copy()
    table["baseline"] = ""
    for col in ("b_auroc", "b_lo", "b_hi"):
        table[col] = np.nan
    for i, name, model, keep in _sampler_rows(table, cases, by_sampler):
        best = better_baseline(crit[keep], {b: v[keep] for b, v in baselines.items()})
        table.at[i, "baseline"] = best
        table.loc[i, ["b_auroc", "b_lo", "b_hi"]] = auroc_difference(
            crit[keep], by_sampler[name][model][keep], baselines[best][keep])
    return table


BASELINE_COLUMNS = ("hyper55", "template_cmm", "template_fgm", "template_ensemble")


def by_site(per_scan: pd.DataFrame, sampler: str) -> pd.DataFrame:
    """One sampler's AUROCs (critical vs unremarkable) over all test scans and within each site:
    the > 55 HU baseline, the template ensemble, each model, the AND ensemble, and the ensemble
    minus the site's better baseline with its paired interval. A baseline that reads raw HU can
    rank well within one scanner and badly across scanners with different calibration, so the
    pooled figure alone can flatter a model (README, "All three test sites")."""
    models = [c[len(sampler) + 1:] for c in per_scan.columns if c.startswith(f"{sampler}_")]
    rows = []
    for site, g in [("all", per_scan)] + list(per_scan.groupby("site")):
        pos = (g.label == "critical").to_numpy()
        row = {"site": site, "critical": int(pos.sum()), "unremarkable": int((~pos).sum())}
        if pos.all() or not pos.any():
            rows.append(row)
            continue
        cols = {"> 55 HU": "hyper55", "template": "template_ensemble", **{m: f"{sampler}_{m}" for m in models}}
        for label, col in cols.items():
            a, lo, hi = auroc(pos, g[col].to_numpy(float))
            row[label] = f"{a:.3f} [{lo:.3f}-{hi:.3f}]"
        base = {b: g[b].to_numpy(float) for b in BASELINE_COLUMNS if b in g}
        best = better_baseline(pos, base)
        d, lo, hi = auroc_difference(pos, g[f"{sampler}_ensemble"].to_numpy(float), base[best])
        row["better baseline"] = best
        row["ensemble - better baseline"] = f"{d:+.3f} [{lo:+.3f} to {hi:+.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def add_paired_difference(table: pd.DataFrame, cases: list[Case], by_sampler: dict[str, dict[str, np.ndarray]],
                          reference: str) -> pd.DataFrame:
    """Columns d_auroc, d_lo, d_hi on each sampler's rows: its AUROC minus the reference
    sampler's on the same scans (all critical, and each finding), with the paired DeLong interval.
    The question the benchmark asks ("within 0.01 of the full sampler?") is about this
    difference, and pairing makes its interval far narrower than the two AUROCs' intervals."""
    crit = np.array([c.label == "critical" for c in cases])
    table = table.copy()
    for col in ("d_auroc", "d_lo", "d_hi"):
        table[col] = np.nan
    for i, name, model, keep in _sampler_rows(table, cases, by_sampler):
        table.loc[i, ["d_auroc", "d_lo", "d_hi"]] = auroc_difference(
            crit[keep], by_sampler[name][model][keep], by_sampler[reference][model][keep])
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """The README table: per method and model, AUROC (all critical) with its interval."""
    t = table[table["vs unremarkable"] == "all critical"].copy()
    t["AUROC [95% CI]"] = [f"{a:.3f} [{lo:.3f}-{hi:.3f}]" for a, lo, hi in zip(t.auroc, t.lo, t.hi)]
    cols = ["method", "model", "calls", "s_per_scan", "n_pos", "n_neg", "AUROC [95% CI]"]
    if "d_auroc" in t:  # paired difference to the paper's full sampler, where it was run
        t["vs paper [95% CI]"] = ["" if np.isnan(d) else f"{d:+.3f} [{lo:+.3f} to {hi:+.3f}]"
                                  for d, lo, hi in zip(t.d_auroc, t.d_lo, t.d_hi)]
        cols.append("vs paper [95% CI]")
    if "b_auroc" in t:  # paired difference to the better baseline on the same scans
        t["vs better baseline [95% CI]"] = ["" if np.isnan(d) else f"{d:+.3f} [{lo:+.3f} to {hi:+.3f}] ({b})"
                                            for d, lo, hi, b in zip(t.b_auroc, t.b_lo, t.b_hi, t.baseline)]
        cols.append("vs better baseline [95% CI]")
    return t[[c for c in cols if c in t]]


def per_finding(table: pd.DataFrame) -> pd.DataFrame:
    """AUROC per finding (columns) for each method/model (rows)."""
    t = table[table["vs unremarkable"] != "all critical"]
    return t.pivot_table(index=["method", "model"], columns="vs unremarkable", values="auroc").round(3)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)
