"""Cut-off rules: choose the pair (c_cmm, c_fgm) on the validation split, evaluate on test.

A scan is excluded (taken off the worklist) when score_cmm <= c_cmm AND score_fgm <= c_fgm.

Targets
    "0.98", "98%", "0.99" ...  validation NPV >= that fraction.
    ">0.99" (">99%")           the paper's "more than 99%". Read literally as NPV > 0.99 it
                               would differ from 99% only when a count lands exactly on 99%,
                               i.e. it would not be a separate tier. We define it as the
                               strictest point NPV a validation set can show: 100%, i.e. NO
                               critical scan among the excluded validation scans. Any ">x"
                               target means the same (zero validation misses); for the
                               `conservative` rule it additionally needs Wilson lower bound
                               >= x (see below).

Rules (all fitted on split == 'val', every site pooled)
    paper         each model on its own: its largest cut-off whose validation NPV reaches the
                  target (`guad.metrics.cutoff_at_npv`); then AND. The ensemble's NPV is not
                  constrained, only each model's.
    joint         the pair that maximises the ensemble's validation WLR subject to the
                  ensemble's validation NPV >= target (zero misses for ">x").
    conservative  as joint, but the constraint is on the 95% Wilson LOWER bound of the
                  ensemble's validation NPV: lower bound >= x (and, for ">x", zero misses).
                  It refuses to trust an NPV measured on few excluded scans: zero misses among
                  n excluded scans only gives a lower bound of n / (n + 3.84), so 0.99 needs
                  n >= 381.

joint and conservative search the candidate cut-offs of `guad.metrics.candidate_cutoffs`:
-inf (exclude nothing) and every distinct finite validation score of the model, thinned to
`max_candidates` evenly spaced (in rank) scores when there are more; exact below that.
Ties in WLR go to fewer misses, then to the smaller cut-offs. When no pair qualifies, the
result is (-inf, -inf): nothing is excluded.

Missing scores (a scan a model failed on, NaN in the store's frame) become +inf: such a scan
is never excluded and always goes to a radiologist, and it is never a candidate cut-off.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from guad import metrics

RULES = ("paper", "joint", "conservative")
DEFAULT_TARGETS = ("0.98", "0.99", ">0.99")
ALL_SITES = "all"  # the pooled row of `evaluate`


@dataclass(frozen=True)
class Target:
    """An NPV target. value: the fraction written (0.99); strict: written as '>value'."""

    value: float
    strict: bool = False

    @property
    def npv_min(self) -> float:
        """The point NPV the validation set must show (1.0 for a strict target)."""
        return 1.0 if self.strict else self.value

    @property
    def label(self) -> str:
        pct = f"{self.value * 100:.4f}".rstrip("0").rstrip(".")
        return (">" if self.strict else "") + pct + "%"


def parse_target(text: str | float | Target) -> Target:
    """'0.99', '99%', '99', '>0.99', '>99%' (or a float, or a Target) -> Target."""
    if isinstance(text, Target):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = repr(float(text))
    m = re.fullmatch(r"\s*(>)?\s*([0-9]*\.?[0-9]+)\s*(%)?\s*", str(text))
    if not m:
        raise ValueError(f"NPV target {text!r}: expected e.g. 0.99, 99%, >0.99 or >99%")
    v = float(m.group(2))
    if m.group(3) or v > 1.0:  # '99%' or '99' are percentages
        v /= 100.0
    if not 0.0 < v <= 1.0:
        raise ValueError(f"NPV target {text!r}: must be in (0, 100%]")
    return Target(round(v, 10), bool(m.group(1)))


def parse_targets(text: str) -> list[Target]:
    """'0.98,0.99,>0.99' -> [Target, ...] (order kept)."""
    return [parse_target(t) for t in str(text).split(",") if t.strip()]


@dataclass(frozen=True)
class OperatingPoint:
    """A pair of cut-offs and where it came from. c = -inf: that model excludes nothing."""

    rule: str
    target: str        # Target.label, e.g. '>99%'
    c_cmm: float
    c_fgm: float

    @property
    def name(self) -> str:
        return f"{self.rule} {self.target}"

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- arrays
def frame_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(critical bool (N,), score_cmm (N,), score_fgm (N,)) from a scans+scores frame
    (columns critical or label, score_cmm, score_fgm). Missing scores -> +inf."""
    if "critical" in frame:
        crit = frame["critical"].to_numpy(dtype=bool)
    else:
        crit = (frame["label"] == "critical").to_numpy()
    a = frame["score_cmm"].to_numpy(dtype=np.float64, na_value=np.nan)
    b = frame["score_fgm"].to_numpy(dtype=np.float64, na_value=np.nan)
    return crit, np.nan_to_num(a, nan=np.inf), np.nan_to_num(b, nan=np.inf)


# ----------------------------------------------------------------------------- rules
def rule_paper(critical, s_cmm, s_fgm, target) -> OperatingPoint:
    t = parse_target(target)
    return OperatingPoint("paper", t.label,
                          metrics.cutoff_at_npv(critical, s_cmm, t.npv_min),
                          metrics.cutoff_at_npv(critical, s_fgm, t.npv_min))


def _search(rule: str, critical, s_cmm, s_fgm, target, max_candidates) -> OperatingPoint:
    t = parse_target(target)
    g1 = metrics.candidate_cutoffs(s_cmm, max_candidates)
    g2 = metrics.candidate_cutoffs(s_fgm, max_candidates)
    tn, fn = metrics.grid_counts(critical, s_cmm, s_fgm, g1, g2)  # (G1, G2)
    excl = tn + fn
    # integer form of tn / excl >= npv_min, with the same float slack as cutoff_at_npv
    feasible = (excl > 0) & (tn >= t.npv_min * excl - 1e-12 * excl)
    if rule == "conservative":
        _, lo, _ = metrics.wilson(tn, excl)
        feasible &= lo >= t.value - 1e-12
    best = metrics.best_pair(tn, fn, feasible)
    if best is None:
        return OperatingPoint(rule, t.label, float("-inf"), float("-inf"))
    return OperatingPoint(rule, t.label, float(g1[best[0]]), float(g2[best[1]]))


def rule_joint(critical, s_cmm, s_fgm, target, max_candidates: int | None = 1000) -> OperatingPoint:
    return _search("joint", critical, s_cmm, s_fgm, target, max_candidates)


def rule_conservative(critical, s_cmm, s_fgm, target,
                      max_candidates: int | None = 1000) -> OperatingPoint:
    return _search("conservative", critical, s_cmm, s_fgm, target, max_candidates)


def fit(rule: str, critical, s_cmm, s_fgm, target,
        max_candidates: int | None = 1000) -> OperatingPoint:
    """Fit `rule` ('paper'|'joint'|'conservative') on arrays (bool (N,), float (N,) x2)."""
    if rule == "paper":
        return rule_paper(critical, s_cmm, s_fgm, target)
    if rule == "joint":
        return rule_joint(critical, s_cmm, s_fgm, target, max_candidates)
    if rule == "conservative":
        return rule_conservative(critical, s_cmm, s_fgm, target, max_candidates)
    raise ValueError(f"unknown cut-off rule {rule!r}; expected one of {', '.join(RULES)}")


def choose(rule: str, frame: pd.DataFrame, target, split: str = "val",
           max_candidates: int | None = 1000) -> OperatingPoint:
    """Fit `rule` on the rows of `frame` (the store's scans+scores frame) in `split`."""
    val = frame[frame["split"] == split]
    if val.empty:
        raise ValueError(f"no scans in split {split!r} to choose cut-offs on")
    return fit(rule, *frame_arrays(val), target, max_candidates)


# ----------------------------------------------------------------------------- evaluation
def evaluate(op: OperatingPoint, frame: pd.DataFrame, split: str | None = "test") -> pd.DataFrame:
    """Metrics of `op` on every site of `split` (None: all rows), plus a pooled 'all' row.

    One row per site (sorted) then 'all'. Columns: rule, target, c_cmm, c_fgm, site, the
    ensemble's `metrics.rates` (tn fn tp fp n; npv, wlr, sensitivity, specificity, excluded
    each with _lo _hi _k _n), and each model alone at its own cut-off (Table 2):
    cmm_npv, cmm_npv_lo, cmm_npv_hi, cmm_npv_k, cmm_npv_n, cmm_wlr (same for fgm).
    """
    rows = frame if split is None else frame[frame["split"] == split]
    groups = [(s, rows[rows["site"] == s]) for s in sorted(rows["site"].unique())]
    groups.append((ALL_SITES, rows))
    out = []
    for site, g in groups:
        crit, a, b = frame_arrays(g)
        row = {**op.as_dict(), "site": site}
        row.update(metrics.operating_point(crit, a, b, op.c_cmm, op.c_fgm))
        for model, s, c in (("cmm", a, op.c_cmm), ("fgm", b, op.c_fgm)):
            r = metrics.rates(**metrics.confusion(crit, s <= c))
            for key in ("npv", "npv_lo", "npv_hi", "npv_k", "npv_n", "wlr"):
                row[f"{model}_{key}"] = r[key].item()
        out.append(row)
    return pd.DataFrame(out)
