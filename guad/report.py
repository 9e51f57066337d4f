"""The paper's Table 1 (NPV and WLR per test site and cut-off) and Table 2 (NPV of FGM,
CMM and the ensemble), for any cut-off rule, with counts and 95% Wilson intervals.

Long tables (one row per cell) are what gets written as CSV; `wide_table1` / `wide_table2`
lay them out like the paper for printing.
"""

from __future__ import annotations

import math

import pandas as pd

from guad import cutoffs

MODEL_NAMES = {"fgm": "FGM", "cmm": "CMM", "ensemble": "Ensemble"}


# ----------------------------------------------------------------------------- formatting
def fmt_pct(x: float, digits: int = 1) -> str:
    """0.98148 -> '98.1%'; NaN -> 'n/a'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100.0 * x:.{digits}f}%"


def fmt_rate(k: int, n: int, lo: float | None = None, hi: float | None = None,
             digits: int = 1) -> str:
    """'98.1% (53/54)', with ' [90.2-99.7]' appended when the interval is given."""
    if n == 0:
        return "n/a (0/0)"
    text = f"{fmt_pct(k / n, digits)} ({int(k)}/{int(n)})"
    if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi)):
        text += f" [{100 * lo:.{digits}f}-{100 * hi:.{digits}f}]"
    return text


def fmt_cutoff(c: float) -> str:
    return "none" if c == float("-inf") else f"{c:.6g}"


# ----------------------------------------------------------------------------- tables
def evaluate_rule(frame: pd.DataFrame, rule: str = "paper",
                  targets=cutoffs.DEFAULT_TARGETS, max_candidates: int | None = 1000
                  ) -> tuple[list[cutoffs.OperatingPoint], pd.DataFrame]:
    """Fit `rule` on the validation split for each target and evaluate on every test site.
    Returns (operating points, the concatenated `cutoffs.evaluate` frames)."""
    ops = [cutoffs.choose(rule, frame, t, max_candidates=max_candidates)
           for t in (cutoffs.parse_targets(targets) if isinstance(targets, str) else
                     [cutoffs.parse_target(t) for t in targets])]
    ev = pd.concat([cutoffs.evaluate(op, frame) for op in ops], ignore_index=True)
    return ops, ev


def _cell(row, metric, prefix=""):
    k, n = int(row[f"{prefix}{metric}_k"]), int(row[f"{prefix}{metric}_n"])
    rate, lo, hi = row[f"{prefix}{metric}"], row[f"{prefix}{metric}_lo"], row[f"{prefix}{metric}_hi"]
    return {"k": k, "n": n, "value": rate, "lo": lo, "hi": hi, "text": fmt_rate(k, n, lo, hi)}


def table1(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Long Table 1: rule, cutoff (target label), site, metric ('NPV'|'WLR'), k, n, value,
    lo, hi, text ('98.1% (53/54) [90.2-99.7]'), c_cmm, c_fgm."""
    rows = []
    for _, r in evaluation.iterrows():
        for metric, key in (("NPV", "npv"), ("WLR", "wlr")):
            rows.append({"rule": r["rule"], "cutoff": r["target"], "site": r["site"],
                         "metric": metric, **_cell(r, key), "c_cmm": r["c_cmm"],
                         "c_fgm": r["c_fgm"]})
    return pd.DataFrame(rows)


def table2(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Long Table 2: rule, cutoff, site, model ('FGM'|'CMM'|'Ensemble'), k, n, value (NPV),
    lo, hi, text. FGM and CMM are each model alone at its own cut-off of the rule."""
    rows = []
    for _, r in evaluation.iterrows():
        for model, prefix in (("fgm", "fgm_"), ("cmm", "cmm_"), ("ensemble", "")):
            rows.append({"rule": r["rule"], "cutoff": r["target"], "site": r["site"],
                         "model": MODEL_NAMES[model], **_cell(r, "npv", prefix)})
    return pd.DataFrame(rows)


def operating_points_table(ops: list[cutoffs.OperatingPoint]) -> pd.DataFrame:
    return pd.DataFrame([op.as_dict() for op in ops])


def wide_table1(t1: pd.DataFrame) -> pd.DataFrame:
    """Paper layout: rows (cutoff, metric), columns sites, cells 'text'."""
    order = list(dict.fromkeys(t1["cutoff"]))
    sites = list(dict.fromkeys(t1["site"]))
    w = t1.pivot_table(index=["cutoff", "metric"], columns="site", values="text",
                       aggfunc="first", sort=False)
    w = w.reindex(pd.MultiIndex.from_product([order, ["NPV", "WLR"]],
                                             names=["cutoff", "metric"]))
    return w[sites]


def wide_table2(t2: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Paper layout: rows FGM, CMM, Ensemble; columns (site, cutoff); NPV to `digits`."""
    t = t2.assign(cell=[("n/a" if math.isnan(v) else f"{v:.{digits}f}") for v in t2["value"]])
    w = t.pivot_table(index="model", columns=["site", "cutoff"], values="cell",
                      aggfunc="first", sort=False)
    cols = pd.MultiIndex.from_product([list(dict.fromkeys(t2["site"])),
                                       list(dict.fromkeys(t2["cutoff"]))],
                                      names=["site", "cutoff"])
    return w.reindex(index=list(MODEL_NAMES.values()), columns=cols)


def build(frame: pd.DataFrame, rule: str = "paper", targets=cutoffs.DEFAULT_TARGETS,
          max_candidates: int | None = 1000) -> dict[str, pd.DataFrame]:
    """Everything the report shows, from the store's frame (`Store.frame()`).
    Keys: 'operating_points', 'evaluation' (all metrics), 'table1', 'table2'."""
    ops, ev = evaluate_rule(frame, rule, targets, max_candidates)
    return {"operating_points": operating_points_table(ops), "evaluation": ev,
            "table1": table1(ev), "table2": table2(ev)}


def build_from_store(store, rule: str = "paper", targets=cutoffs.DEFAULT_TARGETS,
                     run_ids: dict[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """`build` on `store.frame(run_ids)` (one short read)."""
    return build(store.frame(run_ids), rule, targets)
