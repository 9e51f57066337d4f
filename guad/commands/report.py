"""Print the paper's Table 1 (NPV and WLR per test site and cut-off, with counts) and
Table 2 (NPV of FGM, CMM and the ensemble), with 95% Wilson intervals, for one cut-off rule,
and write them as CSV.

Rules (fitted on the validation split, evaluated on every test site):
  paper         each model's own cut-off at the target NPV, then AND (the paper's method)
  joint         the cut-off pair with the highest validation WLR at ensemble NPV >= target
  conservative  as joint, but the Wilson lower bound of the ensemble NPV must reach the target
Targets: fractions or percentages; '>0.99' means no missed critical scan among the excluded
validation scans (validation NPV 100%).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from guad import cutoffs, report
from guad.errors import GuadError
from guad.store import Store

HELP = "print and save Table 1 / Table 2 (NPV, WLR with intervals) for a cut-off rule"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="DuckDB store with scans and scores")
    parser.add_argument("--rule", choices=cutoffs.RULES, default="paper")
    parser.add_argument("--targets", default=",".join(cutoffs.DEFAULT_TARGETS),
                        help="comma-separated NPV targets (default: %(default)s)")
    parser.add_argument("--out", help="folder for the CSVs (default: <db name>_report/ "
                        "next to the database)")


def run(args: argparse.Namespace) -> int:
    try:
        targets = cutoffs.parse_targets(args.targets)
    except ValueError as exc:
        raise GuadError(str(exc)) from None
    if not targets:
        raise GuadError("--targets: give at least one NPV target")
    frame = Store(args.db).frame()
    for model in ("cmm", "fgm"):
        if frame[f"score_{model}"].isna().all():
            raise GuadError(f"{args.db}: no {model.upper()} scores yet; run `python -m guad "
                            "score` or import scores with `python -m guad import --scores`")
    try:
        tables = report.build(frame, args.rule, targets)
    except ValueError as exc:  # e.g. no validation split
        raise GuadError(f"{args.db}: {exc}") from None

    with pd.option_context("display.width", 250, "display.max_columns", 50,
                           "display.max_colwidth", 40):
        print(f"Operating points (rule {args.rule}, fitted on the validation split)")
        ops = tables["operating_points"].copy()
        for c in ("c_cmm", "c_fgm"):
            ops[c] = [report.fmt_cutoff(v) for v in ops[c]]
        print(ops.to_string(index=False))
        print("\nTable 1. NPV and WLR per test site: % (k/n) [95% Wilson interval]")
        print(report.wide_table1(tables["table1"]).to_string())
        print("\nTable 2. NPV of FGM, CMM and the ensemble")
        print(report.wide_table2(tables["table2"]).to_string())

    db = Path(args.db)
    out = Path(args.out) if args.out else db.with_name(f"{db.stem}_report")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("operating_points", "table1", "table2", "evaluation"):
        tables[name].to_csv(out / f"{args.rule}_{name}.csv", index=False)
    print(f"\nwrote {args.rule}_{{operating_points,table1,table2,evaluation}}.csv to {out}")
    return 0
