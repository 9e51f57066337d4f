import math

import numpy as np
import pytest

from guad import metrics

# A hand-counted cohort of 8 scans (index: cmm, fgm, critical)
#   0: 0.1 0.5 F   1: 0.2 0.1 F   2: 0.3 0.2 T   3: 0.4 0.9 F
#   4: 0.5 0.3 T   5: 0.6 0.2 F   6: 0.7 0.1 F   7: 0.8 0.9 T
CRIT = np.array([0, 0, 1, 0, 1, 0, 0, 1], dtype=bool)
CMM = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
FGM = np.array([0.5, 0.1, 0.2, 0.9, 0.3, 0.2, 0.1, 0.9])


def test_operating_point_hand_counted():
    # cmm <= 0.5 keeps 0..4, fgm <= 0.3 keeps 1,2,4,5,6 -> both: 1 (F), 2 (T), 4 (T)
    op = metrics.operating_point(CRIT, CMM, FGM, 0.5, 0.3)
    assert (op["tn"], op["fn"], op["tp"], op["fp"], op["n"]) == (1, 2, 1, 4, 8)
    assert op["npv"] == pytest.approx(1 / 3) and (op["npv_k"], op["npv_n"]) == (1, 3)
    assert op["wlr"] == pytest.approx(1 / 8) and (op["wlr_k"], op["wlr_n"]) == (1, 8)
    assert op["sensitivity"] == pytest.approx(1 / 3)
    assert op["specificity"] == pytest.approx(1 / 5)
    assert op["excluded"] == pytest.approx(3 / 8)
    assert op["npv_lo"] < op["npv"] < op["npv_hi"]
    assert isinstance(op["tn"], int) and isinstance(op["npv"], float)


def test_tie_at_the_cutoff_is_excluded():
    # scan 4 has fgm exactly 0.3: excluded at c_fgm = 0.3, kept just below
    at = metrics.operating_point(CRIT, CMM, FGM, 0.5, 0.3)
    below = metrics.operating_point(CRIT, CMM, FGM, 0.5, np.nextafter(0.3, 0))
    assert (at["tn"], at["fn"]) == (1, 2)
    assert (below["tn"], below["fn"]) == (1, 1)


def test_no_excluded_scans_gives_undefined_npv_not_zero():
    op = metrics.operating_point(CRIT, CMM, FGM, -np.inf, 0.5)
    assert (op["tn"], op["fn"], op["tp"], op["fp"]) == (0, 0, 3, 5)
    assert op["npv_n"] == 0 and math.isnan(op["npv"])
    assert math.isnan(op["npv_lo"]) and math.isnan(op["npv_hi"])
    assert op["wlr"] == 0.0 and op["sensitivity"] == 1.0


def test_no_criticals():
    crit = np.zeros(8, bool)
    op = metrics.operating_point(crit, CMM, FGM, 0.5, 0.3)
    assert (op["tn"], op["fn"], op["tp"], op["fp"]) == (3, 0, 0, 5)
    assert op["npv"] == 1.0 and op["npv_hi"] == 1.0
    assert math.isnan(op["sensitivity"])  # 0/0: no critical scan to detect
    assert metrics.cutoff_at_npv(crit, CMM, 1.0) == 0.8  # everything can go


def test_nan_scores_are_rejected():
    bad = FGM.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN.*index 5"):
        metrics.operating_point(CRIT, CMM, bad, 0.5, 0.3)
    with pytest.raises(ValueError, match="NaN"):
        metrics.cutoff_at_npv(CRIT, bad, 0.9)
    with pytest.raises(ValueError, match="NaN"):
        metrics.sweep(CRIT, CMM, bad, [0.1], [0.2])


def test_length_mismatch_and_non_boolean_labels_are_rejected():
    with pytest.raises(ValueError, match="entries"):
        metrics.operating_point(CRIT[:-1], CMM, FGM, 0.5, 0.3)
    with pytest.raises(ValueError, match="booleans"):
        metrics.confusion(np.array([0, 2]), np.array([True, False]))


def test_confusion_many_decisions_at_once():
    ex = np.stack([CMM <= 0.3, np.ones(8, bool), np.zeros(8, bool)])  # (3, 8)
    c = metrics.confusion(CRIT, ex)
    np.testing.assert_array_equal(c["tn"], [2, 5, 0])
    np.testing.assert_array_equal(c["fn"], [1, 3, 0])
    np.testing.assert_array_equal(c["tp"], [2, 0, 3])
    np.testing.assert_array_equal(c["fp"], [3, 0, 5])


@pytest.mark.parametrize("k,n,lo,hi", [
    # Newcombe (1998), Stat Med 17:857, Table I, method 3 (Wilson score, no correction)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
    # textbook values
    (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0),
])
def test_wilson_known_values(k, n, lo, hi):
    r, l, h = metrics.wilson(k, n)
    assert r == pytest.approx(k / n)
    assert l == pytest.approx(lo, abs=5e-5) and h == pytest.approx(hi, abs=5e-5)


def test_wilson_is_vectorised_and_nan_for_empty():
    r, lo, hi = metrics.wilson(np.array([[53, 0], [357, 0]]), np.array([[54, 0], [369, 5]]))
    assert r.shape == lo.shape == hi.shape == (2, 2)
    assert math.isnan(r[0, 1]) and math.isnan(lo[0, 1])
    assert lo[1, 1] == 0.0 and r[1, 1] == 0.0
    assert lo[0, 0] == pytest.approx(0.9023, abs=5e-5)  # 53/54, the paper's internal >99%
    with pytest.raises(ValueError):
        metrics.wilson(5, 4)


# cutoff_at_npv on 10 scans sorted by score, critical at 0.4 and 0.9.
# NPV of "score <= c": 0.1-0.3: 1, 0.4: 3/4, 0.5: 4/5, 0.6: 5/6, 0.7: 6/7, 0.8: 7/8,
# 0.9: 7/9, 1.0: 8/10   (not monotone)
SC = np.round(np.arange(1, 11) / 10, 1)
CR = np.isin(SC, [0.4, 0.9])


@pytest.mark.parametrize("target,expected", [
    (1.0, 0.3), (0.9, 0.3), (0.875, 0.8), (0.85, 0.8), (0.8, 1.0), (0.75, 1.0), (0.0, 1.0),
])
def test_cutoff_at_npv_largest_qualifying_cutoff(target, expected):
    assert metrics.cutoff_at_npv(CR, SC, target) == expected


def test_cutoff_at_npv_exact_fraction_meets_target():
    # 49/50 = 0.98 must meet the 0.98 target despite float rounding
    crit = np.zeros(50, bool)
    crit[10] = True
    s = np.arange(50.0)
    assert metrics.cutoff_at_npv(crit, s, 0.98) == 49.0


def test_cutoff_at_npv_groups_ties():
    # at 0.2 both tied scans are excluded together, one of them critical
    crit = np.array([False, False, True, False])
    s = np.array([0.1, 0.2, 0.2, 0.3])
    assert metrics.cutoff_at_npv(crit, s, 1.0) == 0.1


def test_cutoff_at_npv_none_reaches_target():
    crit = np.array([True, False, False])
    assert metrics.cutoff_at_npv(crit, np.array([0.1, 0.2, 0.3]), 0.99) == -np.inf
    with pytest.raises(ValueError):
        metrics.cutoff_at_npv(crit, np.array([0.1, 0.2, 0.3]), 99)


def test_cutoff_at_npv_ignores_infinite_scores_as_candidates():
    crit = np.array([False, False])
    assert metrics.cutoff_at_npv(crit, np.array([0.1, np.inf]), 0.5) == 0.1


def test_npv_wlr_curve():
    cur = metrics.npv_wlr_curve(CR, SC)
    np.testing.assert_array_equal(cur["cutoff"], SC)
    np.testing.assert_array_equal(cur["tn"], [1, 2, 3, 3, 4, 5, 6, 7, 7, 8])
    np.testing.assert_array_equal(cur["fn"], [0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    np.testing.assert_allclose(cur["wlr"], cur["tn"] / 10)


def brute(crit, a, b, g1, g2):
    tn = np.zeros((len(g1), len(g2)), int)
    fn = np.zeros_like(tn)
    for i, c1 in enumerate(g1):
        for j, c2 in enumerate(g2):
            ex = (a <= c1) & (b <= c2)
            tn[i, j] = np.sum(ex & ~crit)
            fn[i, j] = np.sum(ex & crit)
    return tn, fn


def test_sweep_matches_brute_force_with_ties_and_infinities():
    rng = np.random.default_rng(1)
    n = 300
    crit = rng.random(n) < 0.3
    a = np.round(rng.normal(crit, 1.0), 1)  # rounded: many ties, some exactly on the grid
    b = np.round(rng.normal(crit, 1.0), 1)
    a[:3] = np.inf   # failed scans: never excluded
    b[3:5] = -np.inf
    g1 = np.r_[-np.inf, np.round(np.linspace(-2, 3, 17), 1)]
    g2 = np.round(np.linspace(-2, 3, 23), 1)
    sw = metrics.sweep(crit, a, b, g1, g2)
    tn, fn = brute(crit, a, b, g1, g2)
    np.testing.assert_array_equal(sw["tn"], tn)
    np.testing.assert_array_equal(sw["fn"], fn)
    assert sw["npv"].shape == (18, 23)
    op = metrics.operating_point(crit, a, b, g1[9], g2[11])
    assert sw["npv"][9, 11] == pytest.approx(op["npv"])
    assert sw["wlr_lo"][9, 11] == pytest.approx(op["wlr_lo"])
    assert sw["tp"][9, 11] == op["tp"] and sw["fp"][9, 11] == op["fp"]


def test_sweep_rejects_unsorted_grid():
    with pytest.raises(ValueError, match="ascending"):
        metrics.sweep(CRIT, CMM, FGM, [0.3, 0.1], [0.2])


def test_candidate_cutoffs_and_best_pair():
    c = metrics.candidate_cutoffs(np.array([0.3, 0.1, 0.3, np.inf, 0.2]))
    np.testing.assert_array_equal(c, [-np.inf, 0.1, 0.2, 0.3])
    thin = metrics.candidate_cutoffs(np.arange(5000.0), max_candidates=100)
    assert thin.size == 101 and thin[1] == 0.0 and thin[-1] == 4999.0
    tn = np.array([[1, 5], [5, 2]])
    fn = np.array([[0, 2], [1, 0]])
    feas = np.ones((2, 2), bool)
    assert metrics.best_pair(tn, fn, feas) == (1, 0)  # TN tie 5: fewer misses wins
    assert metrics.best_pair(tn, fn, np.zeros((2, 2), bool)) is None


def test_auroc_matches_mann_whitney_and_sklearn_with_delong_interval():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos = np.r_[np.ones(60, bool), np.zeros(140, bool)]
    s = np.r_[rng.normal(1.0, 1, 60), rng.normal(0, 1, 140)].round(1)  # rounding makes ties
    auc, lo, hi = metrics.auroc(pos, s)
    assert auc == pytest.approx(roc_auc_score(pos, s))
    assert lo < auc < hi and 0.05 < hi - lo < 0.2
    # hand-counted: positives {3, 2}, negatives {2, 1}: pairs (3>2, 3>1, 2=2 -> 1/2, 2>1) = 3.5 / 4
    assert metrics.auroc([1, 1, 0, 0], [3, 2, 2, 1])[0] == pytest.approx(0.875)
    assert metrics.auroc([1, 1, 0, 0], [3, 4, 1, 2])[:2] == (1.0, 1.0)
    assert np.isnan(metrics.auroc([0, 0], [1, 2])[0])
    # more data, narrower interval
    big = metrics.auroc(np.tile(pos, 4), np.tile(s, 4))
    assert big[2] - big[1] < (hi - lo) * 0.6


def test_auroc_difference_is_paired_delong():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    pos = np.r_[np.ones(50, bool), np.zeros(80, bool)]
    a = np.r_[rng.normal(1.0, 1, 50), rng.normal(0, 1, 80)].round(1)
    b = a + rng.normal(0, 0.3, a.size)                 # a slightly noisier copy of the same scans
    d, lo, hi = metrics.auroc_difference(pos, a, b)
    assert d == pytest.approx(roc_auc_score(pos, a) - roc_auc_score(pos, b))
    assert lo < d < hi
    # paired: far narrower than the two separate intervals would suggest
    _, la, ha = metrics.auroc(pos, a)
    assert hi - lo < 0.5 * (ha - la)
    # identical scores: no difference and no uncertainty
    assert metrics.auroc_difference(pos, a, a) == (0.0, 0.0, 0.0)
    # against a constant (AUROC 0.5, placements all 1/2, zero variance) the interval is
    # exactly the single AUROC's DeLong interval, shifted by 0.5
    d, lo, hi = metrics.auroc_difference(pos, a, np.zeros_like(a))
    assert (d + 0.5, lo + 0.5, hi + 0.5) == pytest.approx(metrics.auroc(pos, a))
    # and it agrees with a bootstrap of the paired difference
    idx_p, idx_n = np.flatnonzero(pos), np.flatnonzero(~pos)
    boot = []
    for _ in range(400):
        i = np.r_[rng.choice(idx_p, idx_p.size), rng.choice(idx_n, idx_n.size)]
        boot.append(roc_auc_score(pos[i], a[i]) - roc_auc_score(pos[i], b[i]))
    d, lo, hi = metrics.auroc_difference(pos, a, b)
    assert np.std(boot) == pytest.approx((hi - lo) / (2 * 1.959964), rel=0.3)
    assert np.isnan(metrics.auroc_difference([0, 0], [1, 2], [2, 1])[0])
