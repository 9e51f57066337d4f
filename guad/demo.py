"""Which scans the shipped demo carries saved viewer maps for.

A user opens first the scans the operating point gets wrong: every false negative (a critical
scan excluded) and every false positive (an unremarkable scan kept on the worklist) at the
default operating points (the paper rule at 98%, 99% and >99%), on the test split; then a few
of each class and finding. Any other scan is remade from its seed and reconstructed on demand.
"""

from __future__ import annotations

import pandas as pd

from guad import cutoffs

DEFAULT_TARGETS = ("0.98", "0.99", ">0.99")


def wrong_at(frame: pd.DataFrame, op: cutoffs.OperatingPoint, split: str = "test") -> pd.Series:
    """Scan ids that `op` gets wrong on `split`: critical excluded (FN) or unremarkable kept (FP)."""
    rows = frame[frame["split"] == split]
    crit, a, b = cutoffs.frame_arrays(rows)
    excluded = (a <= op.c_cmm) & (b <= op.c_fgm)
    return rows.loc[crit == excluded, "scan_id"]


def select(frame: pd.DataFrame, per_group: int = 3, targets=DEFAULT_TARGETS,
           max_scans: int | None = None) -> list[str]:
    """FN first, then FP at each default operating point, then `per_group` scans of each
    (split, label, finding); deduplicated, in that order, capped at max_scans."""
    ids: list[str] = []
    ops = [cutoffs.choose("paper", frame, t) for t in targets]
    fn_fp = []
    for op in ops:
        rows = frame[frame["split"] == "test"]
        crit, a, b = cutoffs.frame_arrays(rows)
        excluded = (a <= op.c_cmm) & (b <= op.c_fgm)
        fn_fp.append(rows.loc[crit & excluded, "scan_id"])
    for op in ops:
        fn_fp.append(wrong_at(frame, op))
    for s in fn_fp:
        ids += list(s)
    scored = frame.dropna(subset=["score_cmm", "score_fgm"])
    for _, g in scored.sort_values("scan_id").groupby(["split", "label", "finding"], dropna=False):
        ids += list(g["scan_id"].head(per_group))
    out = list(dict.fromkeys(ids))
    return out[:max_scans] if max_scans else out
