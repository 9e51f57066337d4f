"""Generator speed and peak memory, one CPU thread.

    python benchmarks/bench_synth.py [--n 5]
Targets: >= 2 volumes/s at 96x96x32, >= 0.5 volumes/s at 256x256x32, peak RSS < 2 GB.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from guad.synth import FINDINGS, generate_scan
from guad.synth.template import load_template


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5, help="volumes per size")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    load_template()
    print(f"template load: {time.perf_counter() - t0:.2f} s (built on first use, then cached)")
    generate_scan(0, None, size=96)  # warm-up
    kinds = [None] + list(FINDINGS)
    for size, target in ((96, 2.0), (256, 0.5)):
        t0 = time.perf_counter()
        for i in range(args.n):
            generate_scan(1000 + i, kinds[i % len(kinds)], size=size)
        dt = (time.perf_counter() - t0) / args.n
        print(f"{size}x{size}x32: {dt:.3f} s/volume = {1 / dt:.2f} volumes/s "
              f"(target >= {target}) {'OK' if 1 / dt >= target else 'SLOW'}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS): {peak_mb:.0f} MB (target < 2048) "
          f"{'OK' if peak_mb < 2048 else 'HIGH'}")


if __name__ == "__main__":
    main()
