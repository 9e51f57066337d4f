import numpy as np
import pandas as pd
import pytest

from guad import report
from guad.cli import main
from guad.cutoffs import OperatingPoint, evaluate
from guad.store import Store, read_manifest, read_scores

# The paper's Table 1 (counts as printed): cut-off -> [(TN, excluded, all scans), ...]
# for internal, external 1, external 2, external 3, and the percentages it prints.
PAPER_TABLE1 = {
    ">99%": [((53, 54, 544), "98.1%", "9.7%"), ((357, 369, 1795), "96.7%", "19.9%"),
             ((64, 65, 244), "98.5%", "26.2%"), ((360, 375, 1295), "96.0%", "27.8%")],
    "99%": [((71, 74, 544), "95.9%", "13.1%"), ((433, 451, 1795), "96.0%", "24.1%"),
            ((68, 70, 244), "97.1%", "27.9%"), ((429, 445, 1295), "96.4%", "33.1%")],
    "98%": [((97, 103, 544), "94.2%", "17.8%"), ((503, 526, 1795), "95.6%", "28.0%"),
            ((83, 86, 244), "96.5%", "34.0%"), ((477, 496, 1295), "96.2%", "36.8%")],
}


def test_paper_table1_cells_from_their_counts():
    assert report.fmt_rate(53, 54) == "98.1% (53/54)"
    assert report.fmt_rate(53, 544) == "9.7% (53/544)"
    assert report.fmt_rate(357, 369) == "96.7% (357/369)"
    assert report.fmt_rate(357, 1795) == "19.9% (357/1795)"
    for rows in PAPER_TABLE1.values():
        for (tn, excluded, n), npv, wlr in rows:
            assert report.fmt_rate(tn, excluded).startswith(npv + " ")
            assert report.fmt_rate(tn, n).startswith(wlr + " ")


def site_rows(site, tn, fn, tp, fp):
    """Test-split rows whose confusion at cut-offs (0.5, 0.5) is exactly (tn, fn, tp, fp):
    excluded scans score 0.1 on both models; kept scans score 0.9 on CMM (FGM 0.1, so FGM
    alone excludes them: the ensemble beats FGM)."""
    rows = []
    for kind, count, label, cmm in (("tn", tn, "normal", 0.1), ("fn", fn, "critical", 0.1),
                                    ("tp", tp, "critical", 0.9), ("fp", fp, "benign", 0.9)):
        rows += [(f"{site}-{kind}{i}", site, "test", label, cmm, 0.1) for i in range(count)]
    return rows


def paper_like_frame():
    # internal test: >99% row of the paper, 53/54 and 53/544; external 1: 357/369, 357/1795
    rows = site_rows("internal", 53, 1, 100, 390) + site_rows("external 1", 357, 12, 300, 1126)
    f = pd.DataFrame(rows, columns=["scan_id", "site", "split", "label", "score_cmm", "score_fgm"])
    return f.assign(critical=f["label"] == "critical")


def test_table1_reproduces_the_papers_internal_and_external_cells():
    f = paper_like_frame()
    assert (f["site"] == "internal").sum() == 544 and (f["site"] == "external 1").sum() == 1795
    ev = evaluate(OperatingPoint("paper", ">99%", 0.5, 0.5), f)
    t1 = report.table1(ev).set_index(["site", "metric"])
    assert t1.loc[("internal", "NPV"), "text"].startswith("98.1% (53/54) [")
    assert t1.loc[("internal", "WLR"), "text"].startswith("9.7% (53/544) [")
    assert t1.loc[("external 1", "NPV"), "text"].startswith("96.7% (357/369) [")
    assert t1.loc[("external 1", "WLR"), "text"].startswith("19.9% (357/1795) [")
    assert t1.loc[("internal", "NPV"), "lo"] == pytest.approx(0.9023, abs=5e-5)
    assert (t1.loc[("all", "NPV"), "k"], t1.loc[("all", "NPV"), "n"]) == (410, 423)
    w = report.wide_table1(report.table1(ev))
    assert w.loc[(">99%", "WLR"), "internal"].startswith("9.7% (53/544)")

    t2 = report.table2(ev).set_index(["site", "model"])
    assert (t2.loc[("internal", "Ensemble"), "k"], t2.loc[("internal", "Ensemble"), "n"]) == (53, 54)
    # FGM alone excludes every scan of the site: 53 + 390 unremarkable of 544
    assert (t2.loc[("internal", "FGM"), "k"], t2.loc[("internal", "FGM"), "n"]) == (443, 544)
    assert (t2.loc[("internal", "CMM"), "k"], t2.loc[("internal", "CMM"), "n"]) == (53, 54)
    w2 = report.wide_table2(report.table2(ev))
    assert list(w2.index) == ["FGM", "CMM", "Ensemble"]
    assert w2.loc["Ensemble", ("internal", ">99%")] == "0.981"
    assert w2.loc["FGM", ("internal", ">99%")] == "0.814"


def test_formatting_edge_cases():
    assert report.fmt_rate(0, 0) == "n/a (0/0)"
    assert report.fmt_rate(53, 54, 0.9023, 0.9967) == "98.1% (53/54) [90.2-99.7]"
    assert report.fmt_pct(float("nan")) == "n/a"
    assert report.fmt_cutoff(float("-inf")) == "none"


def make_db(tmp_path):
    rng = np.random.default_rng(0)
    man, sc = [], []
    for site, split, n in (("internal", "val", 300), ("internal", "test", 200),
                           ("external", "test", 200)):
        for i in range(n):
            sid = f"{site}-{split}-{i}"
            crit = rng.random() < 0.15
            man.append((sid, site, split, "critical" if crit else "normal"))
            sc += [(sid, "cmm", rng.normal(2.0 * crit, 1)), (sid, "fgm", rng.normal(2.0 * crit, 1))]
    pd.DataFrame(man, columns=["scan_id", "site", "split", "label"]).to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame(sc, columns=["scan_id", "model", "score"]).to_csv(tmp_path / "s.csv", index=False)
    db = tmp_path / "g.duckdb"
    Store(db).import_tables(read_manifest(tmp_path / "m.csv"), read_scores(tmp_path / "s.csv"))
    return db


@pytest.mark.parametrize("rule", ["paper", "joint", "conservative"])
def test_report_command_prints_and_writes_csv(tmp_path, capsys, rule):
    db = make_db(tmp_path)
    out = tmp_path / "rep"
    assert main(["report", "--db", str(db), "--rule", rule, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Table 1" in text and "Table 2" in text and "Ensemble" in text
    t1 = pd.read_csv(out / f"{rule}_table1.csv")
    assert set(t1["site"]) == {"internal", "external", "all"}
    assert list(dict.fromkeys(t1["cutoff"])) == ["98%", "99%", ">99%"]
    assert {"k", "n", "value", "lo", "hi", "text"} <= set(t1.columns)
    # WLR denominators are every test scan of the site
    assert set(t1[(t1.metric == "WLR") & (t1.site == "internal")]["n"]) == {200}
    t2 = pd.read_csv(out / f"{rule}_table2.csv")
    assert set(t2["model"]) == {"FGM", "CMM", "Ensemble"}
    ops = pd.read_csv(out / f"{rule}_operating_points.csv")
    assert list(ops["rule"]) == [rule] * 3


def test_report_on_a_store_without_scores_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("scan_id,site,split,label\na,s,val,normal\n")
    db = str(tmp_path / "g.duckdb")
    assert main(["import", "--db", db, "--manifest", str(tmp_path / "m.csv")]) == 0
    assert main(["report", "--db", db]) == 2
    assert "no CMM scores yet" in capsys.readouterr().err
    assert main(["report", "--db", db, "--targets", "ninety"]) == 2


def test_build_from_store_matches_build(tmp_path):
    db = make_db(tmp_path)
    a = report.build_from_store(Store(db), "joint", ["0.95"])
    assert len(a["operating_points"]) == 1 and a["operating_points"].loc[0, "target"] == "95%"
    assert len(a["table1"]) == 2 * 3 and len(a["table2"]) == 3 * 3
