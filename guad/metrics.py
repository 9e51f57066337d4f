"""Worklist-reduction metrics as pure, vectorised numpy functions.

Vocabulary (the paper's, see docs/architecture.md):
    critical   the positive class (label 'critical'); unremarkable = normal + benign.
    excluded   the scan is called unremarkable and taken off the worklist, i.e. predicted
               negative. A single model excludes a scan when score <= cut-off (ties at the
               cut-off are excluded); the ensemble excludes it only when BOTH models do.

    TN = excluded and unremarkable      FN = excluded and critical (a miss)
    TP = kept and critical              FP = kept and unremarkable

    NPV          = TN / (TN + FN)        among the excluded scans
    WLR          = TN / N                excluded true unremarkable over ALL scans (paper eq. 5)
    sensitivity  = TP / (TP + FN)
    specificity  = TN / (TN + FP)
    excluded     = (TN + FN) / N

Every rate is reported with its count k, denominator n and a 95% Wilson score interval,
because with counts like 53/54 the interval is wide and a bare percentage misleads.
A rate whose denominator is 0 (e.g. NPV when nothing is excluded) is NaN, and so is its
interval: it is undefined, not 0 or 1.

Scores are float arrays of shape (N,); NaN is rejected with a ValueError (a missing score
must be decided on by the caller: `guad.cutoffs` turns it into +inf, "never excluded").
+-inf are allowed. No function here does I/O or keeps state.
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile

# Relative slack on "npv >= target": 49/50 must satisfy target 0.98 even though the float
# division and the decimal target can disagree in the last bit.
_EPS = 1e-12


# ----------------------------------------------------------------------------- validation
def as_scores(score, name: str = "score") -> np.ndarray:
    """Return `score` as a float64 (N,) array; raise ValueError on NaN or a wrong shape."""
    s = np.asarray(score, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of scores, got shape {s.shape}")
    nan = np.isnan(s)
    if nan.any():
        first = int(np.flatnonzero(nan)[0])
        raise ValueError(f"{name}: {int(nan.sum())} NaN score(s) (first at index {first}); "
                         "drop or fill missing scores before computing metrics")
    return s


def as_critical(critical, n: int | None = None) -> np.ndarray:
    """Return the labels as a bool (N,) array; checks the length against n when given."""
    c = np.asarray(critical)
    if c.ndim != 1:
        raise ValueError(f"critical: expected a 1-D array, got shape {c.shape}")
    if c.dtype != bool:
        if not np.isin(c, (0, 1)).all():
            raise ValueError("critical: expected booleans (or 0/1)")
        c = c.astype(bool)
    if n is not None and c.shape[0] != n:
        raise ValueError(f"critical has {c.shape[0]} entries but the scores have {n}")
    return c


def _check_target(target: float) -> float:
    t = float(target)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"NPV target must be a fraction in [0, 1], got {target!r}")
    return t


# ----------------------------------------------------------------------------- intervals
def wilson(k, n, z: float = Z95):
    """Wilson score interval for k successes out of n trials, vectorised.

    k, n: ints or integer arrays of the same (broadcastable) shape, 0 <= k <= n.
    Returns (rate, lo, hi) as float64 arrays (0-d for scalar input); NaN where n == 0.
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("wilson: need 0 <= k <= n")
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        z2 = z * z
        denom = 1.0 + z2 / n
        centre = (p + z2 / (2.0 * n)) / denom
        half = (z / denom) * np.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
        lo = np.clip(centre - half, 0.0, 1.0)
        hi = np.clip(centre + half, 0.0, 1.0)
    # exact bounds where they are known; avoids 1 - 1e-17 style noise at k == 0 or k == n
    lo = np.where(k == 0, 0.0, lo)
    hi = np.where(k == n, 1.0, hi)
    empty = n == 0
    return (np.where(empty, np.nan, p), np.where(empty, np.nan, lo),
            np.where(empty, np.nan, hi))


def _rate(out: dict, name: str, k, n) -> None:
    r, lo, hi = wilson(k, n)
    out[name], out[f"{name}_lo"], out[f"{name}_hi"] = r, lo, hi
    out[f"{name}_k"], out[f"{name}_n"] = k, n


def rates(tn, fn, tp, fp) -> dict:
    """All rates with counts and Wilson intervals from confusion counts (ints or arrays).

    Keys: tn fn tp fp n, and for each of npv wlr sensitivity specificity excluded:
    <name>, <name>_lo, <name>_hi, <name>_k, <name>_n.
    """
    tn, fn, tp, fp = (np.asarray(x, dtype=np.int64) for x in (tn, fn, tp, fp))
    n = tn + fn + tp + fp
    out = {"tn": tn, "fn": fn, "tp": tp, "fp": fp, "n": n}
    _rate(out, "npv", tn, tn + fn)
    _rate(out, "wlr", tn, n)
    _rate(out, "sensitivity", tp, tp + fn)
    _rate(out, "specificity", tn, tn + fp)
    _rate(out, "excluded", tn + fn, n)
    return out


def _scalars(d: dict) -> dict:
    """0-d arrays -> Python int/float, so a single operating point is a plain dict."""
    return {k: (v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v) for k, v in d.items()}


# ----------------------------------------------------------------------------- confusion
def confusion(critical, excluded) -> dict:
    """Confusion counts for an exclusion decision.

    critical: bool (N,). excluded: bool (N,) or (..., N) (several decisions at once).
    Returns {'tn','fn','tp','fp'} as ints (or int64 arrays of shape (...)).
    """
    excluded = np.asarray(excluded, dtype=bool)
    c = as_critical(critical, excluded.shape[-1])
    fn = np.count_nonzero(excluded & c, axis=-1)
    tn = np.count_nonzero(excluded & ~c, axis=-1)
    n_crit = int(c.sum())
    tp = n_crit - fn
    fp = (c.shape[0] - n_crit) - tn
    out = {"tn": tn, "fn": fn, "tp": tp, "fp": fp}
    return {k: (int(v) if np.ndim(v) == 0 else np.asarray(v, dtype=np.int64)) for k, v in out.items()}


# ----------------------------------------------------------------------------- one model
def _cumulative(critical, score) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Sort once; for each distinct score c (ascending) the TN and FN of "score <= c".
    Returns (cutoff (U,), tn (U,), fn (U,), N, number of criticals)."""
    s = as_scores(score)
    c = as_critical(critical, s.shape[0])
    order = np.argsort(s, kind="stable")
    s_sorted, c_sorted = s[order], c[order]
    cum_fn = np.cumsum(c_sorted)                     # (N,) criticals with score <= s_sorted[i]
    cum_tn = np.arange(1, s.shape[0] + 1) - cum_fn   # (N,) unremarkable likewise
    # the last index of each run of equal scores: there the count includes every tie
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True]) if s.size else \
        np.array([], dtype=np.int64)
    return s_sorted[last], cum_tn[last], cum_fn[last], s.shape[0], int(c.sum())


def npv_wlr_curve(critical, score) -> dict:
    """NPV and WLR of ONE model at every distinct cut-off (its own scores), ascending.

    critical: bool (N,), score: float (N,). Returns a dict of (U,) arrays, U = number of
    distinct scores: 'cutoff', plus everything `rates` gives (tn, fn, ..., npv, wlr, ...
    with intervals). Cut-off c excludes the scans with score <= c, so ties are grouped.
    """
    cut, tn, fn, n, n_crit = _cumulative(critical, score)
    out = {"cutoff": cut}
    out.update(rates(tn, fn, n_crit - fn, (n - n_crit) - tn))
    return out


def cutoff_at_npv(critical, score, target: float) -> float:
    """The largest cut-off c among the scores such that the scans with score <= c have
    NPV >= target; -inf when no cut-off reaches the target (then nothing is excluded).

    critical: bool (N,), score: float (N,), target in [0, 1]. NPV is not monotone in c, so
    this is the largest qualifying c, not the first crossing. Only finite scores are
    candidates (a +inf score is a "never exclude" marker, never a cut-off).
    """
    t = _check_target(target)
    cut, tn, fn, _, _ = _cumulative(critical, score)
    excl = tn + fn  # >= 1 at every distinct score
    # integer form of tn / excl >= t, with a relative slack so that 49/50 meets 0.98
    ok = np.isfinite(cut) & (tn >= t * excl - _EPS * excl)
    idx = np.flatnonzero(ok)
    return float(cut[idx[-1]]) if idx.size else float("-inf")


# ----------------------------------------------------------------------------- ensemble
def excluded_by(s_cmm, s_fgm, c_cmm: float, c_fgm: float) -> np.ndarray:
    """The AND ensemble: bool (N,), True where both scores are <= their cut-offs."""
    a = as_scores(s_cmm, "score_cmm")
    b = as_scores(s_fgm, "score_fgm")
    if a.shape != b.shape:
        raise ValueError(f"score_cmm {a.shape} and score_fgm {b.shape} differ in length")
    return (a <= c_cmm) & (b <= c_fgm)


def operating_point(critical, s_cmm, s_fgm, c_cmm: float, c_fgm: float) -> dict:
    """Metrics of the AND ensemble at cut-offs (c_cmm, c_fgm).

    critical: bool (N,), s_cmm / s_fgm: float (N,). Returns a flat dict of Python scalars:
    tn fn tp fp n, and npv / wlr / sensitivity / specificity / excluded each with _lo, _hi
    (95% Wilson), _k and _n. O(N), a handful of vector ops.
    """
    ex = excluded_by(s_cmm, s_fgm, c_cmm, c_fgm)
    return _scalars(rates(**confusion(critical, ex)))


def grid_counts(critical, s_cmm, s_fgm, grid_cmm, grid_fgm) -> tuple[np.ndarray, np.ndarray]:
    """TN and FN of the AND ensemble for every pair of cut-offs in a grid, at once.

    grid_cmm: (G1,), grid_fgm: (G2,) ascending cut-offs. Returns (tn, fn), int64 (G1, G2):
    tn[i, j] = # unremarkable scans with s_cmm <= grid_cmm[i] and s_fgm <= grid_fgm[j].

    How: each scan falls in one cell (a, b) of the (G1+1, G2+1) lattice, a = the first
    grid index whose cut-off is >= its score (np.searchsorted, 'left' so that a tie is
    excluded). It is excluded at (i, j) iff a <= i and b <= j, so a 2-D histogram of the
    cells followed by a cumulative sum along both axes counts every pair: O(N log G + G1 G2)
    instead of O(N G1 G2).
    """
    a_s = as_scores(s_cmm, "score_cmm")
    b_s = as_scores(s_fgm, "score_fgm")
    c = as_critical(critical, a_s.shape[0])
    g1 = np.asarray(grid_cmm, dtype=np.float64)
    g2 = np.asarray(grid_fgm, dtype=np.float64)
    for g, name in ((g1, "grid_cmm"), (g2, "grid_fgm")):
        if g.ndim != 1 or np.isnan(g).any() or np.any(np.diff(g) < 0):
            raise ValueError(f"{name}: expected a 1-D ascending array of cut-offs without NaN")
    G1, G2 = g1.shape[0], g2.shape[0]
    a = np.searchsorted(g1, a_s, side="left")  # (N,) in [0, G1]; G1 = never excluded
    b = np.searchsorted(g2, b_s, side="left")  # (N,) in [0, G2]
    cell = a * (G2 + 1) + b                     # (N,) flat cell index
    size = (G1 + 1) * (G2 + 1)
    hist_fn = np.bincount(cell[c], minlength=size).reshape(G1 + 1, G2 + 1)
    hist_all = np.bincount(cell, minlength=size).reshape(G1 + 1, G2 + 1)
    fn = hist_fn.cumsum(0).cumsum(1)[:G1, :G2]
    tn = hist_all.cumsum(0).cumsum(1)[:G1, :G2] - fn
    return tn.astype(np.int64), fn.astype(np.int64)


def sweep(critical, s_cmm, s_fgm, grid_cmm, grid_fgm) -> dict:
    """Every metric of the AND ensemble over a grid of cut-off pairs.

    Returns the dict of `rates` with (G1, G2) arrays (tn, fn, tp, fp, npv, npv_lo, ...,
    wlr, ...) plus 'grid_cmm' (G1,) and 'grid_fgm' (G2,). Entry [i, j] is the operating
    point (grid_cmm[i], grid_fgm[j]); equal to `operating_point` there.
    """
    c = as_critical(critical)
    tn, fn = grid_counts(c, s_cmm, s_fgm, grid_cmm, grid_fgm)
    n_crit = int(c.sum())
    out = rates(tn, fn, n_crit - fn, (c.shape[0] - n_crit) - tn)
    out["grid_cmm"] = np.asarray(grid_cmm, dtype=np.float64)
    out["grid_fgm"] = np.asarray(grid_fgm, dtype=np.float64)
    return out


def candidate_cutoffs(score, max_candidates: int | None = 1000) -> np.ndarray:
    """Cut-offs worth trying for one model: -inf (exclude nothing) then its distinct finite
    scores, ascending. With more than max_candidates distinct scores, an evenly spaced
    (in rank) subset of them, always keeping the smallest and largest. Shape (K,)."""
    s = as_scores(score)
    u = np.unique(s[np.isfinite(s)])
    if max_candidates is not None and u.size > max_candidates:
        u = u[np.unique(np.linspace(0, u.size - 1, max_candidates).round().astype(np.int64))]
    return np.r_[-np.inf, u]


def best_pair(tn: np.ndarray, fn: np.ndarray, feasible: np.ndarray) -> tuple[int, int] | None:
    """Index (i, j) of the feasible cell with the most TN (largest WLR); ties go to fewer FN,
    then to the smallest i, then the smallest j (the most conservative cut-offs). None when
    no cell is feasible. tn, fn, feasible: (G1, G2)."""
    if not feasible.any():
        return None
    tn_f = np.where(feasible, tn, -1)
    best_tn = tn_f.max()
    cand = feasible & (tn == best_tn)
    fn_c = np.where(cand, fn, np.iinfo(np.int64).max)
    cand &= fn == fn_c.min()
    flat = int(np.flatnonzero(cand.ravel())[0])  # row-major: smallest i, then smallest j
    return divmod(flat, tn.shape[1])


# ----------------------------------------------------------------------------- ranking quality
def auroc(positive, score, z: float = Z95) -> tuple[float, float, float]:
    """Area under the ROC curve of `score` for `positive` (bool (N,)), with a 95% DeLong interval.

    Ties count one half (the Mann-Whitney statistic). Returns (auc, lo, hi); NaN when a class is
    empty. DeLong's variance (DeLong et al., Biometrics 1988) from the placement values, written
    here because neither numpy, scipy nor scikit-learn ships it.
    """
    from scipy.stats import rankdata

    pos = as_critical(positive)
    s = as_scores(score)
    m, n = int(pos.sum()), int((~pos).sum())
    if m == 0 or n == 0:
        return float("nan"), float("nan"), float("nan")
    x, y = s[pos], s[~pos]
    r_all = rankdata(s)
    r_x, r_y = rankdata(x), rankdata(y)
    auc = (r_all[pos].sum() - m * (m + 1) / 2.0) / (m * n)
    v10 = (r_all[pos] - r_x) / n          # placement of each positive among the negatives
    v01 = 1.0 - (r_all[~pos] - r_y) / m   # placement of each negative among the positives
    var = (v10.var(ddof=1) / m if m > 1 else 0.0) + (v01.var(ddof=1) / n if n > 1 else 0.0)
    half = z * np.sqrt(max(var, 0.0))
    return float(auc), float(max(0.0, auc - half)), float(min(1.0, auc + half))


def auroc_difference(positive, score_a, score_b, z: float = Z95) -> tuple[float, float, float]:
    """AUROC(a) - AUROC(b) for two scores of the SAME scans, with its paired 95% DeLong interval.

    The two AUROCs share their scans, so their errors are correlated; the paired variance
    (DeLong et al. 1988: the covariance of the two scores' placement values) is much smaller
    than the sum of the two separate variances. This is the right interval for "does a fast
    sampler come within 0.01 AUROC of the full one". Returns (delta, lo, hi); NaN when a class
    is empty.
    """
    from scipy.stats import rankdata

    pos = as_critical(positive)
    s = np.stack([as_scores(score_a, "score_a"), as_scores(score_b, "score_b")])  # (2, N)
    if s.shape[1] != pos.size:
        raise ValueError(f"scores have {s.shape[1]} values, labels {pos.size}")
    m, n = int(pos.sum()), int((~pos).sum())
    if m == 0 or n == 0:
        return float("nan"), float("nan"), float("nan")
    r_all = rankdata(s, axis=1)                                   # (2, N)
    r_x = rankdata(s[:, pos], axis=1)                             # (2, m)
    r_y = rankdata(s[:, ~pos], axis=1)                            # (2, n)
    v10 = (r_all[:, pos] - r_x) / n                               # (2, m) placements of positives
    v01 = 1.0 - (r_all[:, ~pos] - r_y) / m                        # (2, n) placements of negatives
    auc = v10.mean(axis=1)                                        # (2,)
    c = np.array([1.0, -1.0])
    var = 0.0
    if m > 1:
        var += c @ np.cov(v10, ddof=1) @ c / m
    if n > 1:
        var += c @ np.cov(v01, ddof=1) @ c / n
    delta = float(auc[0] - auc[1])
    half = z * np.sqrt(max(float(var), 0.0))
    return delta, delta - half, delta + half
