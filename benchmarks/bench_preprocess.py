"""Time brain extraction + pre-processing of one 512 x 512 x 32 head CT.

    python benchmarks/bench_preprocess.py [--repeat 5]

Uses `guad.synth.generate_scan(size=512)` when the generator is available, otherwise an
ellipsoid phantom (skull, scalp, brain, ventricles, table, noise). Target: <= 1 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from guad.io import CTVolume
from guad.preprocess import extract_brain, preprocess_ct, window


def phantom_512(seed: int = 0) -> CTVolume:
    rng = np.random.default_rng(seed)
    shape, sp = (512, 512, 32), (0.45, 0.45, 5.0)
    x = (np.arange(512) - 255.5) * sp[0]
    z = (np.arange(32) - 15.5) * sp[2] - 10
    xx, yy, zz = np.meshgrid(x, x, z, indexing="ij", sparse=True)

    def ell(a, b, c, cx=0.0):
        return ((xx - cx) / a) ** 2 + (yy / b) ** 2 + (zz / c) ** 2

    hu = np.full(shape, -1000.0, np.float32)
    hu[ell(82, 97, 77) <= 1] = 40
    hu[ell(78, 93, 73) <= 1] = 1000
    hu[ell(70, 85, 65) <= 1] = 30
    hu[(ell(8, 25, 12, -10) <= 1) | (ell(8, 25, 12, 10) <= 1)] = 5
    hu[np.broadcast_to((yy > 105) & (yy < 115), shape)] = 300
    hu += rng.normal(0, 4, shape).astype(np.float32)
    return CTVolume(hu, np.diag([-sp[0], -sp[1], sp[2], 1.0]), "phantom-512")


def load_scan() -> tuple[CTVolume, str]:
    try:
        from guad.synth import generate_scan

        scan = generate_scan(seed=0, finding="ich", size=512)
        ct = CTVolume(np.asarray(scan.hu, np.float32), np.asarray(scan.affine, float), "synth")
        return ct, "guad.synth.generate_scan(seed=0, finding='ich', size=512)"
    except Exception as exc:  # the generator is optional here
        return phantom_512(), f"ellipsoid phantom (guad.synth unavailable: {exc})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    ct, source = load_scan()
    window(np.zeros(3))                              # import MONAI outside the timing
    preprocess_ct(ct)                                # warm-up
    brain, total = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        mask = extract_brain(ct.hu, ct.spacing)
        t1 = time.perf_counter()
        preprocess_ct(ct)                            # brain extraction + everything else
        t2 = time.perf_counter()
        brain.append(t1 - t0)
        total.append(t2 - t1)
    print(f"scan: {source}, {ct.hu.shape}, spacing {np.round(ct.spacing, 3).tolist()} mm, "
          f"brain {mask.sum() * np.prod(ct.spacing) / 1000:.0f} mL")
    print(f"brain extraction:                median {np.median(brain):.3f} s "
          f"(min {min(brain):.3f}) over {args.repeat}")
    print(f"brain extraction + preprocessing: median {np.median(total):.3f} s "
          f"(min {min(total):.3f}) over {args.repeat}; target <= 1 s")


if __name__ == "__main__":
    main()
