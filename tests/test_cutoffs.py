import itertools

import numpy as np
import pandas as pd
import pytest

from guad import cutoffs, metrics
from guad.cutoffs import OperatingPoint, Target, parse_target

# Six validation scans (cmm, fgm, critical) whose best joint pair is worked out by hand:
#   s1 (1,1) F   s2 (2,2) F   s3 (3,1) T   s4 (1,3) T   s5 (3,3) F   s6 (4,4) F
# To exclude no critical: avoid s3 (c_cmm < 3 or c_fgm < 1) and s4 (c_cmm < 1 or c_fgm < 3);
# the best such pair is (2, 2): s1 and s2, WLR 2/6. Each model alone at NPV 100% can exclude
# nothing (s4 ties s1 at CMM 1; s3 ties s1 at FGM 1), so the paper rule excludes nothing.
# At target 0.6, (4, 4) excludes everything: NPV 4/6 = 0.667, WLR 4/6.
HAND = dict(critical=np.array([0, 0, 1, 1, 0, 0], bool),
            s_cmm=np.array([1, 2, 3, 1, 3, 4.0]), s_fgm=np.array([1, 2, 1, 3, 3, 4.0]))


@pytest.mark.parametrize("text,value,strict,label", [
    ("0.98", 0.98, False, "98%"), ("99%", 0.99, False, "99%"), ("99", 0.99, False, "99%"),
    (">0.99", 0.99, True, ">99%"), ("> 99%", 0.99, True, ">99%"), (0.995, 0.995, False, "99.5%"),
])
def test_parse_target(text, value, strict, label):
    t = parse_target(text)
    assert (t.value, t.strict, t.label) == (value, strict, label)


def test_strict_target_means_zero_validation_misses():
    assert parse_target(">0.99").npv_min == 1.0
    assert parse_target("0.99").npv_min == 0.99
    assert [t.label for t in cutoffs.parse_targets("0.98,0.99,>0.99")] == ["98%", "99%", ">99%"]
    for bad in ("abc", "0", "101%", ">"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_joint_hand_case():
    assert cutoffs.rule_joint(**HAND, target=">0.99") == OperatingPoint("joint", ">99%", 2.0, 2.0)
    assert cutoffs.rule_joint(**HAND, target=1.0).c_cmm == 2.0
    assert cutoffs.rule_joint(**HAND, target=0.6) == OperatingPoint("joint", "60%", 4.0, 4.0)


def test_paper_hand_case_excludes_nothing_where_joint_excludes_two():
    op = cutoffs.rule_paper(**HAND, target=">0.99")
    assert (op.c_cmm, op.c_fgm) == (-np.inf, -np.inf)
    m = metrics.operating_point(HAND["critical"], HAND["s_cmm"], HAND["s_fgm"], op.c_cmm, op.c_fgm)
    assert m["wlr_k"] == 0


def test_paper_rule_is_each_models_own_cutoff():
    rng = np.random.default_rng(3)
    crit = rng.random(400) < 0.2
    a, b = rng.normal(crit, 1), rng.normal(crit * 1.5, 1)
    op = cutoffs.rule_paper(crit, a, b, 0.95)
    assert op.c_cmm == metrics.cutoff_at_npv(crit, a, 0.95)
    assert op.c_fgm == metrics.cutoff_at_npv(crit, b, 0.95)


def test_joint_matches_exhaustive_search():
    rng = np.random.default_rng(7)
    crit = rng.random(120) < 0.25
    a = np.round(rng.normal(crit * 1.2, 1), 1)
    b = np.round(rng.normal(crit * 1.2, 1), 1)
    for target in (0.9, 0.95):
        best = (-1, None)
        for c1, c2 in itertools.product(np.unique(a), np.unique(b)):
            ex = (a <= c1) & (b <= c2)
            tn, fn = np.sum(ex & ~crit), np.sum(ex & crit)
            if tn + fn and tn / (tn + fn) >= target and tn > best[0]:
                best = (tn, (c1, c2))
        op = cutoffs.rule_joint(crit, a, b, target)
        m = metrics.operating_point(crit, a, b, op.c_cmm, op.c_fgm)
        assert m["tn"] == best[0]          # same maximal WLR
        assert m["npv"] >= target
        # and it beats (or ties) the paper rule on validation WLR
        p = cutoffs.rule_paper(crit, a, b, target)
        assert m["tn"] >= metrics.operating_point(crit, a, b, p.c_cmm, p.c_fgm)["tn"]


def test_conservative_needs_the_wilson_lower_bound():
    # 200 unremarkable scans scored 1..200, one critical at 201, 9 unremarkable at 202..210.
    # joint at 98%: exclude all 210 (NPV 209/210 = 0.995). conservative at 98%: Wilson lower
    # bound of 209/210 is 0.9735 < 0.98, but of 200/200 it is 200/203.84 = 0.981: (200, 200).
    s = np.arange(1, 211, dtype=float)
    crit = s == 201
    j = cutoffs.rule_joint(crit, s, s, 0.98)
    c = cutoffs.rule_conservative(crit, s, s, 0.98)
    assert (j.c_cmm, j.c_fgm) == (210.0, 210.0)
    assert (c.c_cmm, c.c_fgm) == (200.0, 200.0) and c.rule == "conservative"
    # ">0.99" conservatively: zero misses AND lower bound >= 0.99, which needs >= 381
    # excluded scans; 200 are not enough, so nothing is excluded
    assert cutoffs.rule_conservative(crit, s, s, ">0.99").c_cmm == -np.inf
    s2 = np.arange(1, 401, dtype=float)
    assert cutoffs.rule_conservative(np.zeros(400, bool), s2, s2, ">0.99").c_cmm == 400.0


def test_unknown_rule():
    with pytest.raises(ValueError, match="unknown cut-off rule"):
        cutoffs.fit("magic", **HAND, target=0.9)


def frame_of(rows):
    return pd.DataFrame(rows, columns=["scan_id", "site", "split", "label", "score_cmm",
                                       "score_fgm"]).assign(
        critical=lambda d: d["label"] == "critical")


def test_choose_uses_validation_and_evaluate_reports_each_site():
    rows = [(f"v{i}", "A", "val", lab, cm, fg)
            for i, (cm, fg, lab) in enumerate([(1, 1, "normal"), (2, 2, "benign"),
                                               (3, 1, "critical"), (1, 3, "critical"),
                                               (3, 3, "normal"), (4, 4, "normal")])]
    # test site A: excluded at (2,2): t1 normal, t2 critical -> NPV 1/2; t3 kept
    # test site B: excluded: u1 benign; u2 has no FGM score (NaN) -> never excluded
    rows += [("t1", "A", "test", "normal", 0.5, 2), ("t2", "A", "test", "critical", 2, 1),
             ("t3", "A", "test", "normal", 5, 5),
             ("u1", "B", "test", "benign", 1, 1), ("u2", "B", "test", "normal", 1, np.nan)]
    frame = frame_of(rows)
    op = cutoffs.choose("joint", frame, ">99%")
    assert (op.c_cmm, op.c_fgm) == (2.0, 2.0)  # the hand case, test rows ignored
    ev = cutoffs.evaluate(op, frame).set_index("site")
    assert list(ev.index) == ["A", "B", "all"]
    assert (ev.loc["A", "tn"], ev.loc["A", "fn"], ev.loc["A", "n"]) == (1, 1, 3)
    assert ev.loc["A", "npv"] == 0.5 and ev.loc["A", "wlr"] == pytest.approx(1 / 3)
    assert (ev.loc["B", "tn"], ev.loc["B", "fn"], ev.loc["B", "n"]) == (1, 0, 2)
    assert (ev.loc["all", "tn"], ev.loc["all", "fn"], ev.loc["all", "n"]) == (2, 1, 5)
    # each model alone at its own cut-off (Table 2): CMM <= 2 excludes t1, t2 on site A
    assert (ev.loc["A", "cmm_npv_k"], ev.loc["A", "cmm_npv_n"]) == (1, 2)
    # FGM <= 2 on site B: u1 only (u2's missing score counts as +inf)
    assert (ev.loc["B", "fgm_npv_k"], ev.loc["B", "fgm_npv_n"]) == (1, 1)
    assert ev.loc["all", "rule"] == "joint" and ev.loc["all", "target"] == ">99%"


def test_choose_without_validation_split_fails_clearly():
    frame = frame_of([("t1", "A", "test", "normal", 1, 1)])
    with pytest.raises(ValueError, match="no scans in split 'val'"):
        cutoffs.choose("paper", frame, 0.99)


def test_target_dataclass_label_round_trip():
    assert Target(0.98).label == "98%" and Target(0.99, True).label == ">99%"
    assert parse_target(Target(0.9)) == Target(0.9)
