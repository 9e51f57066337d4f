"""The sampler benchmark end to end on the tiny cohort with tiny random-weight models, and its
ensemble rule on constructed scores."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from guad.benchmark import ensemble


def test_ensemble_is_the_larger_reference_quantile():
    ref = {"cmm": np.array([1.0, 2, 3, 4]), "fgm": np.array([10.0, 20, 30, 40])}
    s = {"cmm": np.array([0.5, 2.5, 5.0]), "fgm": np.array([35.0, 5.0, 5.0])}
    np.testing.assert_allclose(ensemble(ref, s), [0.75, 0.5, 1.0])


def test_ensemble_ties_at_zero_do_not_saturate():
    # most reference CMM scores are exactly 0: a 0 must not rank above every FGM score
    ref = {"cmm": np.array([0.0, 0, 0, 5]), "fgm": np.array([1.0, 2, 3, 4])}
    s = {"cmm": np.array([0.0, 0.0]), "fgm": np.array([0.5, 10.0])}
    e = ensemble(ref, s)
    assert e[0] < e[1] and e[1] == 1.0


def test_benchmark_command_prints_every_sampler_and_baseline(tiny_cohort, tiny_checkpoints, tmp_path):
    out = subprocess.run([sys.executable, "-m", "guad", "benchmark", "--manifest", str(tiny_cohort / "manifest.csv"),
                          "--cmm", str(tiny_checkpoints["cmm"]), "--fgm", str(tiny_checkpoints["fgm"]),
                          "--samplers", "x0,ddim:2", "--per-class", "4", "--ref", "2", "--train", "3",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    t = pd.read_csv(tmp_path / "benchmark.csv")
    methods = set(t.method)
    assert {"baseline: voxels > 55 HU", "baseline: template deviation", "sampler: x0", "sampler: ddim:2"} <= methods
    s = t[(t.method == "sampler: ddim:2") & (t["vs unremarkable"] == "all critical")].set_index("model")
    assert set(s.index) == {"cmm", "fgm", "ensemble"}
    assert s.loc["cmm", "calls"] == 2 and s.loc["ensemble", "calls"] == 4
    assert ((s.auroc >= 0) & (s.auroc <= 1)).all() and (s.lo <= s.auroc).all() and (s.auroc <= s.hi).all()
    assert s.loc["cmm", "n_pos"] == 4 and s.loc["cmm", "n_neg"] == 4
    assert "AUROC [95% CI]" in out.stdout
    # every sampler row carries its paired difference to the better baseline on the same scans
    assert s.baseline.isin(["hyper55", "template_cmm", "template_fgm", "template_ensemble"]).all()
    assert (s.b_lo <= s.b_auroc).all() and (s.b_auroc <= s.b_hi).all()
    per_scan = pd.read_csv(tmp_path / "per_scan.csv", dtype={"scan_id": str}, keep_default_na=False)
    assert len(per_scan) == 8 and {"site", "hyper55", "x0_cmm", "x0_fgm", "x0_ensemble", "ddim:2_fgm"} <= set(per_scan)
    sites = pd.read_csv(tmp_path / "by_site.csv")
    assert set(sites.sampler) == {"x0", "ddim:2"} and sites.site.iloc[0] == "all"
    assert "within each test site" in out.stdout
    # a rerun (as after a kill) reads every sampler's scores back instead of scoring again
    again = subprocess.run(out.args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count("read back") == 4  # 2 samplers x 2 models
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "benchmark.csv"), t)


def test_paired_difference_to_the_paper_sampler():
    from guad.benchmark import Case, add_paired_difference, auroc_rows
    from guad.metrics import auroc

    rng = np.random.default_rng(0)
    labels = ["critical"] * 30 + ["normal"] * 30
    findings = ["ich", "sdh"] * 15 + [""] * 30
    cases = [Case(str(i), "test", lab, f, {}, 0.0) for i, (lab, f) in enumerate(zip(labels, findings))]
    crit = np.array(labels) == "critical"
    paper = {"fgm": np.where(crit, 2.0, 0.0) + rng.normal(0, 1, 60)}
    fast = {"fgm": paper["fgm"] + rng.normal(0, 0.5, 60)}
    by = {"paper": paper, "x0": fast}
    rows = auroc_rows("sampler: paper", cases, paper, {}) + auroc_rows("sampler: x0", cases, fast, {})
    t = add_paired_difference(pd.DataFrame(rows), cases, by, "paper")
    x0 = t[(t.method == "sampler: x0") & (t["vs unremarkable"] == "all critical")].iloc[0]
    assert x0.d_auroc == pytest.approx(auroc(crit, fast["fgm"])[0] - auroc(crit, paper["fgm"])[0])
    assert x0.d_lo < x0.d_auroc < x0.d_hi
    ich = t[(t.method == "sampler: x0") & (t["vs unremarkable"] == "ich")].iloc[0]
    keep = (np.array(findings) == "ich") | ~crit
    assert ich.d_auroc == pytest.approx(auroc(crit[keep], fast["fgm"][keep])[0] - auroc(crit[keep], paper["fgm"][keep])[0])
    own = t[t.method == "sampler: paper"]
    assert (own.d_auroc == 0).all() and (own.d_hi == 0).all()


def test_pick_spread_sites_takes_every_site_in_turn():
    from guad.benchmark import pick_test_scans

    rows = [{"scan_id": f"{site}{i:02d}", "site": site, "split": "test", "label": lab}
            for site, n in (("A", 10), ("B", 2), ("C", 10)) for i in range(n) for lab in ("critical", "normal")]
    m = pd.DataFrame(rows)
    m["scan_id"] = m.scan_id + m.label.str[0]
    first = pick_test_scans(m, 6)
    assert set(first.site) == {"A"}  # scan-id order: the first site fills the pick
    spread = pick_test_scans(m, 6, spread_sites=True)
    crit = spread[spread.label == "critical"]
    assert crit.site.value_counts().to_dict() == {"A": 2, "B": 2, "C": 2}
    # B runs out after 2: the rest comes from the sites that still have scans
    big = pick_test_scans(m, 12, spread_sites=True)
    assert big[big.label == "critical"].site.value_counts().to_dict() == {"A": 5, "C": 5, "B": 2}
    assert len(big) == 24 and not big.scan_id.duplicated().any()


def test_better_baseline_difference_and_by_site():
    from guad.benchmark import Case, add_baseline_difference, auroc_rows, by_site
    from guad.metrics import auroc

    rng = np.random.default_rng(1)
    n = 120
    site = np.array(["s1", "s2"] * (n // 2))
    crit = rng.random(n) < 0.4
    labels = np.where(crit, "critical", "normal")
    model = crit * 1.5 + rng.normal(0, 1, n)
    # a bright-voxel count that ranks well within each site but is shifted by the site's calibration
    hyper = crit * 1.0 + rng.normal(0, 1, n) + np.where(site == "s2", 5.0, 0.0)
    weak = rng.normal(0, 1, n)
    cases = [Case(str(i), "test", lab, "ich" if c else "", {}, h, s)
             for i, (lab, c, h, s) in enumerate(zip(labels, crit, hyper, site))]
    baselines = {"hyper55": hyper, "template_ensemble": weak}
    by = {"x0": {"ensemble": model}}
    t = add_baseline_difference(pd.DataFrame(auroc_rows("sampler: x0", cases, by["x0"], {})), cases, by, baselines)
    row = t[t["vs unremarkable"] == "all critical"].iloc[0]
    best = max(baselines, key=lambda b: auroc(crit, baselines[b])[0])
    assert row.baseline == best
    assert row.b_auroc == pytest.approx(auroc(crit, model)[0] - auroc(crit, baselines[best])[0])
    assert row.b_lo < row.b_auroc < row.b_hi
    per_scan = pd.DataFrame({"scan_id": [c.scan_id for c in cases], "site": site, "label": labels,
                             "finding": "", **baselines, "x0_ensemble": model, "x0_fgm": model})
    table = by_site(per_scan, "x0").set_index("site")
    assert list(table.index) == ["all", "s1", "s2"]
    assert table.loc["s1", "critical"] == int(crit[site == "s1"].sum())
    within = auroc(crit[site == "s1"], hyper[site == "s1"])[0]
    assert table.loc["s1", "> 55 HU"].startswith(f"{within:.3f}")
    assert table.loc["s1", "better baseline"] == "hyper55"
