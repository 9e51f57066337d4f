"""Train the coarse (cmm) or fine (fgm) diffusion autoencoder on a cohort manifest's
train-split normal scans. Re-running the same command resumes from <out>/last.pt.

  python -m guad train --model cmm --config cpu-cmm --manifest data/cohorts/x/manifest.csv \\
      --out runs/cmm --steps 20000
  torchrun --nproc_per_node 4 -m guad train --model fgm --config paper-fgm ...   # DDP

Writes <out>/last.pt (resumable checkpoint), <out>/model.pt (config + EMA weights, for
inference) and <out>/train_log.jsonl. Scans that fail to load are reported and skipped.
"""

from __future__ import annotations

import argparse

HELP = "train a CMM or FGM network on a manifest's normal scans (resumable, DDP via torchrun)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=("cmm", "fgm"))
    parser.add_argument("--config", required=True, help="network config (see `python -m guad models`)")
    parser.add_argument("--manifest", required=True, help="cohort manifest CSV")
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder")
    parser.add_argument("--steps", type=int, default=20_000, help="total steps (default %(default)s)")
    parser.add_argument("--batch-size", type=int, help="per process (default: the config's)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the config's)")
    parser.add_argument("--lr-min", type=float, help="cosine floor (default: the config's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ckpt-every", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--no-resume", action="store_true", help="ignore <out>/last.pt")
    parser.add_argument("--init", help="warm start from a model.pt of the same config (e.g. the shipped "
                                       "weights): its weights and EMA, a fresh optimizer and schedule")
    parser.add_argument("--end-at", type=int, metavar="STEP",
                        help="finish at this step of the --steps schedule (checkpoint and model.pt): "
                             "a time-boxed run that the same command reproduces")
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="activation checkpointing: recompute activations in the backward pass "
                             "(far less memory, one extra forward pass of each block, same gradients)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="network arithmetic (default auto: bf16 autocast on a GPU, fp32 on a CPU; "
                             "bf16 on a CPU with AVX-512 BF16 / AMX trains about 2.3x faster)")
    parser.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # tests: a kill
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from guad.errors import InputError
    from guad.models import CONFIGS
    from guad.train import TrainConfig, train

    if args.config not in CONFIGS:
        raise InputError(None, f"unknown config {args.config!r}; known: {', '.join(CONFIGS)}")
    tc = TrainConfig(model=args.model, config=args.config, manifest=args.manifest, out=args.out,
                     steps=args.steps, batch_size=args.batch_size, lr=args.lr, lr_min=args.lr_min,
                     seed=args.seed, ckpt_every=args.ckpt_every, log_every=args.log_every,
                     num_workers=args.workers, device=args.device, resume=not args.no_resume, init=args.init,
                     end_at=args.end_at, grad_checkpointing=args.grad_checkpointing,
                     precision=args.precision, stop_after=args.stop_after, progress=not args.no_progress)
    res = train(tc)
    if res.get("stopped"):
        return 0
    print(f"trained to step {res['step']}: {res['out']}/model.pt")
    return 0
