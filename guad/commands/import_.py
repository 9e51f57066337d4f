"""Load a cohort manifest (or your own labels CSV) and, optionally, scores computed elsewhere
into a DuckDB store, all or nothing.

Manifest columns: scan_id, site, split (train|val|test), label (normal|benign|critical);
optional finding, path (relative to the manifest's folder), lesion_ml, seed. A scan_id that
is already in the store is updated.
Scores columns: scan_id, model (cmm|fgm), score. Each scan must be in the manifest or the
store. Importing the same scores file again writes nothing twice.

Any bad row (unknown label or split, duplicate scan_id, missing column, score for an unknown
scan, non-numeric score) stops the import with its line number; nothing is written.
"""

from __future__ import annotations

import argparse

from guad.store import Store, read_manifest, read_scores

HELP = "load a manifest / labels CSV (and optional scores CSV) into a DuckDB store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="DuckDB file (created if missing)")
    parser.add_argument("--manifest", required=True, help="manifest or labels CSV")
    parser.add_argument("--scores", help="CSV of scan_id, model, score computed elsewhere")


def run(args: argparse.Namespace) -> int:
    # validate both files completely before opening the database: nothing half-imported
    scans = read_manifest(args.manifest)
    scores = read_scores(args.scores) if args.scores else None
    out = Store(args.db).import_tables(scans, scores, source=str(args.scores or ""))
    counts = scans["split"].value_counts().reindex(["train", "val", "test"], fill_value=0)
    print(f"imported {out['scans']} scans ({', '.join(f'{k} {v}' for k, v in counts.items())}) "
          f"into {args.db}")
    if scores is not None:
        print(f"imported {out['scores']} scores as run(s) {', '.join(out['runs'])}")
    return 0
