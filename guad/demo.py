"""Which scans the shipped demo carries saved viewer maps for.

A user opens first the scans the operating point gets wrong, then a few of each kind:
1. every false negative (a critical scan excluded) at the default operating points (the paper
   rule at 98%, 99% and >99%) on the test split;
2. `per_group` scans of each (split, label, finding);
3. the false positives (an unremarkable test scan kept on the worklist), the most anomalous
   first (largest score / cut-off), at 99% then 98% then >99%.
At >99% nearly every unremarkable scan is a false positive, so (3) is what `max_scans` cuts to
keep the shipped maps small; any other scan is remade from its seed and reconstructed on demand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from guad import cutoffs

DEFAULT_TARGETS = ("0.98", "0.99", ">0.99")


def select(frame: pd.DataFrame, per_group: int = 3, targets=DEFAULT_TARGETS,
           max_scans: int | None = None) -> list[str]:
    """Scan ids in the order above, deduplicated, capped at max_scans."""
    ops = {t: cutoffs.choose("paper", frame, t) for t in targets}
    rows = frame[frame["split"] == "test"]
    crit, a, b = cutoffs.frame_arrays(rows)
    ids: list[str] = []
    for op in ops.values():                                  # 1. misses
        ids += list(rows.loc[crit & (a <= op.c_cmm) & (b <= op.c_fgm), "scan_id"])
    scored = frame.dropna(subset=["score_cmm", "score_fgm"])  # 2. a few of each kind
    for _, g in scored.sort_values("scan_id").groupby(["split", "label", "finding"], dropna=False):
        ids += list(g["scan_id"].head(per_group))
    order = sorted(targets, key=lambda t: (t != "0.99", t != "0.98"))
    for t in order:                                          # 3. false positives
        op = ops[t]
        kept = ~crit & ~((a <= op.c_cmm) & (b <= op.c_fgm))
        excess = np.maximum(a / max(op.c_cmm, 1e-9), b / max(op.c_fgm, 1e-9))
        ids += list(rows.loc[kept, "scan_id"].iloc[np.argsort(-excess[kept], kind="stable")])
    out = list(dict.fromkeys(ids))
    return out[:max_scans] if max_scans else out
