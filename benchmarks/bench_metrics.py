"""Timings of the decision core on synthetic scores (the app recomputes on every slider move).

    python benchmarks/bench_metrics.py [--n 100000] [--grid 200] [--repeat 20]

Prints the median (and best) wall time of:
  1. one operating point (AND ensemble, counts + Wilson intervals) over N scans  (< 5 ms)
  2. a full sweep of a G x G grid of cut-off pairs over N scans                 (< 200 ms)
  3. the `joint` rule search (<= 1000 candidate cut-offs per model) over N scans
  4. the `paper` rule (two single-model cut-offs) over N scans
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from guad import cutoffs, metrics


def timeit(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up (imports, page faults)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, min(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--grid", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    crit = rng.random(args.n) < 0.2                              # (N,) bool
    s_cmm = rng.lognormal(crit * 1.0, 0.8)                        # (N,) float64
    s_fgm = rng.lognormal(crit * 0.8, 0.8)
    c_cmm, c_fgm = np.quantile(s_cmm, 0.4), np.quantile(s_fgm, 0.4)
    g1 = np.quantile(s_cmm, np.linspace(0, 1, args.grid))
    g2 = np.quantile(s_fgm, np.linspace(0, 1, args.grid))

    rows = [
        (f"operating point, N={args.n:,}", "< 5 ms",
         timeit(lambda: metrics.operating_point(crit, s_cmm, s_fgm, c_cmm, c_fgm), args.repeat)),
        (f"sweep {args.grid}x{args.grid} grid, N={args.n:,}", "< 200 ms",
         timeit(lambda: metrics.sweep(crit, s_cmm, s_fgm, g1, g2), args.repeat)),
        (f"joint rule search (<=1000x1000 cut-offs), N={args.n:,}", "",
         timeit(lambda: cutoffs.rule_joint(crit, s_cmm, s_fgm, 0.99), max(3, args.repeat // 4))),
        (f"conservative rule search, N={args.n:,}", "",
         timeit(lambda: cutoffs.rule_conservative(crit, s_cmm, s_fgm, 0.99), max(3, args.repeat // 4))),
        (f"paper rule (two cut-offs), N={args.n:,}", "",
         timeit(lambda: cutoffs.rule_paper(crit, s_cmm, s_fgm, 0.99), args.repeat)),
    ]
    print(f"{'what':<52} {'median ms':>10} {'best ms':>9}  target")
    for name, target, (med, best) in rows:
        print(f"{name:<52} {med:>10.2f} {best:>9.2f}  {target}")


if __name__ == "__main__":
    main()
