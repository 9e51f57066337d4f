"""Does each model's reconstruction use its scan's semantic latent?

    python benchmarks/latent_use.py [--n 16] [--sampler ddim:10] [--t0s 300]

A diffusion autoencoder should carry what is particular to a scan in the encoder's latents and
leave the U-Net to draw the rest. Two measurements on validation normals (never trained on),
with the shipped weights (or --cmm / --fgm):

1. Spread: per latent level, the standard deviation of each latent dimension across scans
   (mean over dimensions), beside the spread of the mean latent across dimensions. A spread
   across scans far below the spread across dimensions means the encoder gives every scan
   nearly the same vector.
2. Swap: the mean absolute error in HU inside the brain of the reconstruction with the scan's
   own latents, with another scan's (the batch rolled by one), and with all-zero latents. If
   another scan's latents reconstruct as well as the scan's own, the model ignores what the
   encoder says about the scan; zero latents show that the latents' constant part matters.

Same seeds as `guad score`, so the "own" rows equal benchmarks/recon_quality.py's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from recon_quality import errors, load  # noqa: E402

from guad.commands.score import scan_seed  # noqa: E402
from guad.inference import load_models, score_batch  # noqa: E402


def latent_spread(net, images: torch.Tensor) -> list[tuple[float, float]]:
    """Per level: (sd across scans, mean over dims; sd across dims of the mean latent)."""
    return [(float(z.std(0).mean()), float(z.mean(0).std())) for z in net.encode(images)]


class SwappedLatents:
    """Wraps a model's encode(): 'own' leaves it, 'other' rolls the batch by one scan, 'zero'
    zeroes every latent. The samplers only call encode() and forward(), so nothing else changes."""

    def __init__(self, net, mode: str):
        self.net, self.mode, self.orig = net, mode, net.encode

    def __enter__(self):
        def encode(x):
            z = self.orig(x)
            if self.mode == "other":
                return [torch.roll(v, 1, 0) for v in z]
            if self.mode == "zero":
                return [torch.zeros_like(v) for v in z]
            return z
        self.net.encode = encode

    def __exit__(self, *exc):
        self.net.encode = self.orig


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default="data/cohorts/demo/manifest.csv")
    p.add_argument("--cmm")
    p.add_argument("--fgm")
    p.add_argument("--n", type=int, default=16, help="validation normals (default 16)")
    p.add_argument("--sampler", default="ddim:10")
    p.add_argument("--t0s", default="", help="noise levels besides each config's, comma-separated")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    manifest = Path(args.manifest)
    m = pd.read_csv(manifest, dtype=str, keep_default_na=False).sort_values("scan_id")
    models = load_models(args.cmm, args.fgm)
    val = load(manifest, m[(m.split == "val") & (m.label == "normal")].head(args.n), models)
    if len(val) < 2:
        raise SystemExit("need at least 2 validation normals to swap latents")
    seeds = [scan_seed(0, sid) for sid, _ in val]
    print(f"{len(val)} validation normals; latent spread (sd across scans / sd across dimensions):")
    for mdl, lm in models.items():
        images = torch.from_numpy(np.stack([inp[mdl].image for _, inp in val])).to(lm.device)
        spread = latent_spread(lm.net, images)
        print(f"  {mdl}: " + "  ".join(f"level {k} {a:.3f} / {b:.3f}" for k, (a, b) in enumerate(spread)))
    rows = []
    for mdl, lm in models.items():
        for t0 in [lm.t0] + [int(t) for t in args.t0s.split(",") if t.strip()]:
            for mode in ("own", "other", "zero"):
                with SwappedLatents(lm.net, mode):
                    res = score_batch(lm, [inp[mdl] for _, inp in val], seeds, args.sampler, t0=t0)
                e = errors((inp[mdl], r.recon) for (_, inp), r in zip(val, res))
                rows.append({"model": mdl, "t0": t0, "latents": mode, **{k: round(v, 2) for k, v in e.items()}})
                print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
