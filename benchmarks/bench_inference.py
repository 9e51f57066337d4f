"""Milliseconds per network call per scan for the shipped models, fp32 against bf16 autocast.

    python benchmarks/bench_inference.py                      # torch's threads, batches 8 and 30
    python benchmarks/bench_inference.py --threads 2 --batches 8
    python benchmarks/bench_inference.py --device cuda --configs paper-cmm,paper-fgm --batches 1,8

--configs times networks of the named configs with random weights instead of the shipped ones
(speed does not depend on the weights), and adds what a full sampler of that many calls
(the config's t0: 400 for CMM, 500 for FGM) would cost per scan: the paper's 88 s and 120 s a
scan on an RTX 3090 are the figures to compare.

One call is what every sampler step costs: the U-Net on a batch of noisy scans with the
semantic encoder's latents already computed (samplers encode once). A paper sampler makes
400 (CMM) or 500 (FGM) of them per scan, x0 one. Random inputs: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # guad without installing it


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--batches", default="8,30", help="comma-separated batch sizes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--configs", help="comma-separated config names, random weights (default: the shipped models)")
    args = ap.parse_args()

    import torch

    from guad.inference import load_models

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    dev = torch.device(args.device)
    if args.configs:
        from types import SimpleNamespace

        from guad.models import HDAE, get_config

        models = {}
        for name in args.configs.split(","):
            torch.manual_seed(0)
            cfg = get_config(name)
            models[name] = SimpleNamespace(cfg=cfg, net=HDAE(cfg).eval().to(dev))
    else:
        models = load_models(None, None, device=args.device)
    print(f"# {args.device}, {torch.get_num_threads()} threads; ms per scan per network call"
          + ("; s per scan for t0 calls (a full sampler)" if args.configs else ""))
    print(f"{'model':10} {'batch':>5} {'fp32':>8} {'bf16':>8}" + (f" {'full fp32':>9} {'full bf16':>9}" if args.configs else ""))
    for m, lm in models.items():
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.rand(batch, 1, *lm.cfg.input_size, device=dev)
            anatomy = torch.randint(0, 5, x.shape, device=dev).float() if lm.cfg.model == "fgm" else None
            latents = lm.net.encode(x)
            t = torch.full((batch,), 300, device=dev)
            ms = {}
            for prec in ("fp32", "bf16"):
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16"):
                    lm.net(x, t, latents=latents, anatomy=anatomy)  # warm-up
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    for _ in range(args.repeats):
                        lm.net(x, t, latents=latents, anatomy=anatomy)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                ms[prec] = (time.perf_counter() - start) / args.repeats / batch * 1000
            full = (f" {ms['fp32'] * lm.cfg.t0 / 1000:9.1f} {ms['bf16'] * lm.cfg.t0 / 1000:9.1f}"
                    if args.configs else "")
            print(f"{m:10} {batch:5d} {ms['fp32']:8.1f} {ms['bf16']:8.1f}{full}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
