"""List every network config: its model kind, input size, U-Net / encoder parameter counts
(counted on the meta device, nothing allocated), levels, channels and inference t0.
The paper columns compare the `paper-*` configs with the counts the paper reports."""

from __future__ import annotations

import argparse

HELP = "list the network configs with input size and parameter counts"

PAPER_COUNTS = {"paper-cmm": (166.6e6, 55.8e6), "paper-fgm": (43.0e6, 21.4e6)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from guad.models import CONFIGS, count_parameters

    rows = []
    for name, cfg in CONFIGS.items():
        n = count_parameters(cfg)
        rows.append({"name": name, "model": cfg.model, "input_size": list(cfg.input_size),
                     "in_channels": cfg.in_channels, "unet_params": n["unet"],
                     "encoder_params": n["encoder"], "unet_channels": list(cfg.unet_channels),
                     "enc_channels": list(cfg.enc_channels), "t0": cfg.t0, "lr": cfg.lr,
                     "batch_size": cfg.batch_size})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'config':10} {'model':5} {'input (X,Y,Z) x C':20} {'U-Net':>9} {'encoder':>9}  "
          f"{'U-Net channels':22} {'t0':>4}  vs paper")
    for r in rows:
        size = "x".join(map(str, r["input_size"])) + f" x {r['in_channels']}"
        paper = ""
        if r["name"] in PAPER_COUNTS:
            pu, pe = PAPER_COUNTS[r["name"]]
            paper = f"{(r['unet_params'] / pu - 1) * 100:+.1f}% / {(r['encoder_params'] / pe - 1) * 100:+.1f}%"
        print(f"{r['name']:10} {r['model']:5} {size:20} {r['unet_params'] / 1e6:8.2f}M "
              f"{r['encoder_params'] / 1e6:8.2f}M  {str(tuple(r['unet_channels'])):22} "
              f"{r['t0']:4d}  {paper}")
    return 0
