"""Seconds per training iteration and peak memory of the network configs, on this machine.

    python benchmarks/bench_train.py                         # cpu configs at batch 4, paper at batch 1
    python benchmarks/bench_train.py --configs cpu-cmm --iters 20 --threads 2
    python benchmarks/bench_train.py --configs paper-cmm,paper-fgm --grad-checkpointing
    python benchmarks/bench_train.py --configs cpu-cmm,cpu-fgm --threads 1 --precision bf16
    python benchmarks/bench_train.py --configs paper-cmm,paper-fgm --device cuda --precision bf16 --batch 2

On a GPU (--device cuda) every config runs --iters timed iterations (on the CPU the paper
configs run one), timing waits for the GPU (torch.cuda.synchronize), and peak memory is the
GPU's (torch.cuda.max_memory_allocated) beside the process's resident memory.

One iteration is the training loop's step: noise to a random t < 550, forward (encoder + U-Net,
under bf16 autocast with --precision bf16, as `guad train --precision bf16`), MSE, backward,
gradient clipping, AdamW, EMA update. Each config runs in its own process so its peak
resident memory (ru_maxrss) is its own; the first iteration is a warm-up and not timed. FLOPs
(forward + backward, counted on the meta device) help compare machines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # guad without installing it

DEFAULT = {"cpu-cmm": 4, "cpu-fgm": 4, "paper-cmm": 1, "paper-fgm": 1}


def flops(name: str, batch: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from guad.models import HDAE, get_config

    cfg = get_config(name)
    with torch.device("meta"):
        model = HDAE(cfg)
        x = torch.zeros(batch, 1, *cfg.input_size)
        with FlopCounterMode(display=False) as fc:
            model(x, torch.zeros(batch, dtype=torch.long), x0=x, anatomy=x).sum().backward()
    return fc.get_total_flops()


def one(name: str, batch: int, iters: int, checkpointing: bool = False, precision: str = "fp32",
        device: str = "cpu") -> dict:
    import copy

    import torch
    import torch.nn.functional as F

    from guad.diffusion import NoiseSchedule
    from guad.models import HDAE, count_parameters, get_config

    cfg = get_config(name)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    model = HDAE(cfg).train().set_checkpointing(checkpointing).to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.05)
    sched = NoiseSchedule.linear()
    x0 = torch.rand(batch, 1, *cfg.input_size, device=dev)
    anatomy = torch.randint(0, 5, x0.shape, device=dev).float() if cfg.model == "fgm" else None
    times = []
    for i in range(iters + 1):
        sync()
        t0 = time.perf_counter()
        t = torch.randint(0, 550, (batch,), device=dev)
        noise = torch.randn_like(x0)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            eps = model(sched.q_sample(x0, t, noise), t, x0=x0, anatomy=anatomy)
        loss = F.mse_loss(eps.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 0.005)
        sync()
        if i:
            times.append(time.perf_counter() - t0)
    n = count_parameters(cfg)
    return {"config": name, "input": "x".join(map(str, cfg.input_size)), "batch": batch,
            "params_M": round(n["total"] / 1e6, 2), "s_per_iter": round(statistics.median(times), 3),
            "s_min": round(min(times), 3), "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "GFLOP_per_iter": round(flops(name, batch) / 1e9, 1), "threads": torch.get_num_threads(),
            "checkpointing": checkpointing, "precision": precision, "device": str(dev),
            "peak_gpu_MB": round(torch.cuda.max_memory_allocated(dev) / 2**20) if cuda else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=",".join(DEFAULT), help="comma-separated config names")
    ap.add_argument("--batch", type=int, help="batch size (default: 4 for cpu-*, 1 for paper-*)")
    ap.add_argument("--iters", type=int, default=5, help="timed iterations (paper-*: 1)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--grad-checkpointing", action="store_true",
                    help="activation checkpointing (guad train --grad-checkpointing)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="network arithmetic (bf16: autocast; on a CPU fast with AVX-512 BF16 / AMX)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(args.one, args.batch, args.iters, args.grad_checkpointing, args.precision, args.device)))
        return 0
    load = os.getloadavg()[0]
    print(f"# {os.cpu_count()} CPUs, load average {load:.1f} at start"
          + (", activation checkpointing on" if args.grad_checkpointing else "") + f", {args.precision}, {args.device}")
    print(f"{'config':10} {'input':10} {'batch':>5} {'params':>8} {'s/iter':>7} {'min':>7} "
          f"{'peak RSS':>9} {'GFLOP/it':>9} {'peak GPU':>9}")
    for name in args.configs.split(","):
        batch = args.batch or DEFAULT.get(name, 4)
        iters = 1 if name.startswith("paper") and args.device == "cpu" else args.iters
        cmd = [sys.executable, __file__, "--one", name, "--batch", str(batch), "--iters", str(iters),
               "--precision", args.precision, "--device", args.device]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.grad_checkpointing:
            cmd += ["--grad-checkpointing"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(f"{name:10} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{r['config']:10} {r['input']:10} {r['batch']:5d} {r['params_M']:7.2f}M {r['s_per_iter']:7.2f} "
              f"{r['s_min']:7.2f} {r['peak_rss_MB']:7d}MB {r['GFLOP_per_iter']:9.1f} "
              + (f"{r['peak_gpu_MB']:7d}MB" if r["peak_gpu_MB"] is not None else f"{'-':>9}"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
