"""Compute and save case-viewer maps for chosen scans of a scored store.

    python -m guad maps --db data/demo/demo.duckdb --select demo --out data/demo/maps --no-input

Uses the same checkpoints, sampler, t0 and per-scan seeds as the store's latest scoring run of
each model (it refuses checkpoints whose hash differs from the run's), so a saved map belongs to
the stored score. `--select demo`: every false negative at the paper rule's 98% / 99% /
>99% points, a few scans of each class and finding, then false positives, most anomalous first,
up to --max-scans (guad.demo). `--scans` names scans instead. `--no-input` leaves out the input volume: a synthetic scan's input is
remade from its seed when the case is opened (a cpu-config case is then about 26 KB).
"""

from __future__ import annotations

import sys

HELP = "save case-viewer maps (reconstructions, signed maps) for chosen scans of a scored store"


def add_arguments(p) -> None:
    p.add_argument("--db", required=True)
    p.add_argument("--out", help="maps root (default: <db folder>/maps)")
    p.add_argument("--select", choices=["demo"], help="pick the scans (guad.demo.select)")
    p.add_argument("--scans", help="comma-separated scan ids")
    p.add_argument("--per-group", type=int, default=3, help="with --select demo: scans per class and finding")
    p.add_argument("--max-scans", type=int, default=None)
    p.add_argument("--cmm", help="CMM checkpoint (default: shipped weights)")
    p.add_argument("--fgm", help="FGM checkpoint (default: shipped weights)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-input", action="store_true", help="do not save the input volume")
    p.add_argument("--overwrite", action="store_true")


def run(args) -> int:
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from guad import dashboard, demo
    from guad.commands.score import scan_seed
    from guad.errors import GuadError
    from guad.inference import case_maps, load_models, model_input, score_batch
    from guad.maps import has_case, save_case
    from guad.preprocess import preprocess_ct
    from guad.store import Store

    torch.set_grad_enabled(False)
    store = Store(args.db)
    frame = dashboard.load_frame(args.db)
    if args.select == "demo":
        ids = demo.select(frame, args.per_group, max_scans=args.max_scans)
    elif args.scans:
        ids = [s.strip() for s in args.scans.split(",") if s.strip()]
    else:
        raise GuadError("choose scans with --select demo or --scans ID,...")
    out = Path(args.out) if args.out else Path(args.db).resolve().parent / "maps"
    models = load_models(args.cmm, args.fgm, device=args.device)
    runs = store.runs()
    runs = runs[runs.sampler != "import"].sort_values("started")
    plan = {}
    for m, lm in models.items():
        r = runs[runs.model == m]
        if r.empty:
            raise GuadError(f"{args.db}: no scoring run of {m.upper()}; run `python -m guad score` first")
        r = r.iloc[-1]
        if r.checkpoint_hash != lm.hash:
            raise GuadError(f"{lm.path}: checkpoint hash {lm.hash} differs from the store's {m.upper()} run "
                            f"({r.checkpoint_hash}); pass the checkpoint that scored the store")
        plan[m] = (str(r.sampler), int(r.seed) if r.seed == r.seed and r.seed is not None else 0,
                   int(r.t0) if r.t0 == r.t0 and r.t0 is not None else None)
    todo = [s for s in ids if args.overwrite or not has_case(out, s)]
    print(f"{len(ids)} scans selected, {len(todo)} to compute into {out}", file=sys.stderr)
    failed = 0
    for sid in tqdm(todo, unit="scan", file=sys.stderr, disable=None):
        try:
            ct = dashboard.scan_ct(args.db, sid)
            pp = preprocess_ct(ct)
            results = {}
            for m, lm in models.items():
                sampler, seed, t0 = plan[m]
                results[m] = score_batch(lm, [model_input(pp, lm.cfg)], [scan_seed(seed, sid)], sampler, t0=t0)[0]
            save_case(out, sid, case_maps(ct, pp, results), with_input=not args.no_input)
        except Exception as exc:  # noqa: BLE001 - one bad scan never stops the rest
            failed += 1
            print(f"{sid}: {exc}", file=sys.stderr)
    print(f"saved {len(todo) - failed}, failed {failed}", file=sys.stderr)
    return 0 if failed == 0 else 1
