"""Score every scan of a manifest with both models into the DuckDB store.

    python -m guad score --manifest data/cohorts/demo/manifest.csv --db data/demo.duckdb \
        [--cmm CKPT] [--fgm CKPT] [--sampler NAME] [--device cpu|cuda] [--maps DIR]

- The manifest's scans are imported (or updated) first; then, per model, a scoring run is
  opened whose id is fixed by (model, checkpoint hash, sampler, t0, seed): running the same
  command again resumes it and scores only what is missing, writing nothing twice.
- A scan that cannot be read or pre-processed is recorded as failed, with its error, for both
  models; the others go on.
- Scans are scored in batches (--batch) on the GPU when there is one; each batch's rows are
  written in one transaction, so a kill loses at most the batch in flight.
- Under torchrun (RANK / WORLD_SIZE set) each rank takes every WORLD_SIZE-th missing scan and
  writes to the same store (the store retries its file lock, so ranks take turns).
- --maps DIR saves input, reconstructions and signed maps per scan (guad.maps) for the viewer.
- Each scan's noise comes from a seed derived from (--seed, scan_id): the same scan scored
  twice, alone or in any batch or shard, gets the same score.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

HELP = "score a manifest's scans with CMM and FGM into the DuckDB store (resumable, batched, sharded)"


def add_arguments(p) -> None:
    p.add_argument("--manifest", required=True, help="cohort manifest CSV (guad synth, or your own labels CSV)")
    p.add_argument("--db", required=True, help="DuckDB store file (created if missing)")
    p.add_argument("--cmm", help="CMM checkpoint (default: shipped data/weights/cpu-cmm.pt)")
    p.add_argument("--fgm", help="FGM checkpoint (default: shipped data/weights/cpu-fgm.pt)")
    p.add_argument("--sampler", default=None,
                   help="ddpm | ddim | ddim:K | x0 | x0:K for both models (default: the paper's, ddpm for CMM, ddim for FGM)")
    p.add_argument("--t0", default=None,
                   help="noise level(s) to start from: one number for both, or cmm=N,fgm=M (default: each config's)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default: cuda when available)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="network arithmetic (default auto: bf16 on a GPU, fp32 on the CPU; bf16 is about "
                        "twice as fast on a CPU with AVX-512 BF16 and is recorded as a separate run)")
    p.add_argument("--maps", help="folder to save per-scan viewer maps (input, reconstructions, signed maps)")
    p.add_argument("--splits", default="val,test", help="comma-separated splits to score (default: val,test)")
    p.add_argument("--batch", type=int, default=4, help="scans per network batch (default 4)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--limit", type=int, default=None, help="score at most this many missing scans (per rank)")
    p.add_argument("--retry-failed", action="store_true", help="also retry scans recorded as failed")


def scan_seed(seed: int, scan_id: str) -> int:
    """A per-scan noise seed that depends only on the job seed and the scan id."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{scan_id}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def parse_t0(text: str | None, models: dict) -> dict[str, int]:
    """'300' -> both models; 'cmm=300,fgm=250' -> per model; None -> each config's own t0."""
    out = {m: lm.t0 for m, lm in models.items()}
    if text:
        for part in str(text).split(","):
            name, _, val = part.rpartition("=")
            for m in ([name.strip()] if name else list(out)):
                if m not in out:
                    raise ValueError(f"--t0: unknown model {m!r}")
                out[m] = int(val)
                if not 1 <= out[m] <= 1000:
                    raise ValueError(f"--t0 must be in 1..1000, got {out[m]}")
    return out


def _rank() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from guad.errors import InputError
    from guad.inference import (PAPER_SAMPLER, case_maps, load_models, model_input, pick_device,
                                resolve_precision, score_batch)
    from guad.io import read_ct
    from guad.maps import save_case
    from guad.preprocess import preprocess_ct
    from guad.sampling import SamplerSpec
    from guad.store import Store, read_manifest

    torch.set_grad_enabled(False)
    rank, world = _rank()
    device = pick_device(args.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    store = Store(args.db).init()
    if rank == 0:
        store.import_tables(read_manifest(args.manifest), source=str(args.manifest))
    else:  # the other ranks wait until rank 0 has registered the scans
        deadline = time.time() + 600
        while store.scans().empty and time.time() < deadline:
            time.sleep(0.5)

    models = load_models(args.cmm, args.fgm, device=device)
    t0s = parse_t0(args.t0, models)
    runs = {}
    for name, lm in models.items():
        spec = SamplerSpec.parse(args.sampler or PAPER_SAMPLER[name])
        params = {"config": lm.cfg.name, "min_voxels": lm.min_voxels}
        if resolve_precision(args.precision, lm.device) == "bf16":  # fp32 runs keep their old keys
            params["precision"] = "bf16"
        params.update(spec.run_params())  # a changed sampler never resumes an older run
        runs[name] = store.ensure_run(name, lm.hash, str(spec), t0=t0s[name], seed=args.seed, params=params)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    todo: dict[str, set[str]] = {}
    for name, run_id in runs.items():
        for split in splits:
            for sid in store.missing_scans(run_id, split=split, retry_failed=args.retry_failed):
                todo.setdefault(sid, set()).add(name)
    ids = sorted(todo)[rank::world]
    if args.limit is not None:
        ids = ids[: args.limit]
    paths = store.scans().set_index("scan_id")["path"].to_dict()
    print(f"rank {rank}/{world}: {len(ids)} scans to score on {device} "
          f"({', '.join(f'{m}: {runs[m]}' for m in runs)})", file=sys.stderr)

    bar = tqdm(total=len(ids), unit="scan", desc=f"scoring{'' if world == 1 else f' r{rank}'}",
               file=sys.stderr, disable=None)
    n_ok = n_failed = 0
    for start in range(0, len(ids), max(1, args.batch)):
        batch_ids = ids[start: start + args.batch]
        rows = {name: [] for name in models}
        loaded = []  # (scan_id, ct, pp)
        for sid in batch_ids:
            path = store.resolve(paths.get(sid))
            try:
                if not path:
                    raise InputError(None, f"scan {sid} has no file path in the store")
                ct = read_ct(path)
                loaded.append((sid, ct, preprocess_ct(ct)))
            except Exception as exc:  # noqa: BLE001 - a bad scan is recorded, never fatal
                msg = str(exc) if isinstance(exc, InputError) else f"{path}: {type(exc).__name__}: {exc}"
                for name in todo[sid]:
                    rows[name].append({"scan_id": sid, "score": None, "status": "failed", "error": msg})
                n_failed += 1
        results = {sid: {} for sid, _, _ in loaded}
        for name, lm in models.items():
            mine = [(sid, pp) for sid, _, pp in loaded if name in todo[sid]]
            if not mine:
                continue
            inputs = [model_input(pp, lm.cfg) for _, pp in mine]
            seeds = [scan_seed(args.seed, sid) for sid, _ in mine]
            out = score_batch(lm, inputs, seeds, args.sampler, t0=t0s[name], precision=args.precision)
            for (sid, _), r in zip(mine, out):
                results[sid][name] = r
                rows[name].append({"scan_id": sid, "score": r.score, "status": "ok", "seconds": r.seconds})
        if args.maps:
            for sid, ct, pp in loaded:
                folder = save_case(args.maps, sid, case_maps(ct, pp, results[sid]))
                for name in results[sid]:
                    for row in rows[name]:
                        if row["scan_id"] == sid:
                            row["maps_path"] = str(folder)
        for name, r in rows.items():
            if r:
                store.write_scores(runs[name], r)
        n_ok += len(loaded)
        bar.update(len(batch_ids))
    bar.close()
    for run_id in runs.values():  # every rank: the last one to finish sets the time
        store.finish_run(run_id)
    print(f"rank {rank}: scored {n_ok}, failed {n_failed}", file=sys.stderr)
    return 0
