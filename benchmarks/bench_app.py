"""Server-side time of the app's reruns on a 10,000-scan store.

    python benchmarks/bench_app.py [--scans 10000] [--repeats 5]

Builds an example store (random scores, guad.dashboard.example_store) in a temp folder, then
drives app.py with Streamlit's AppTest (the same script run the server does, without the
browser): the median time of one rerun after a cut-off change on the Operating-point page, and
of one slice change in the Case viewer (a fragment rerun in the server; AppTest reruns the
whole script, so this figure is an upper bound). Targets: < 300 ms and < 150 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from guad import dashboard
    tmp = Path(tempfile.mkdtemp(prefix="guad-bench-app-"))
    db = tmp / "bench.duckdb"
    t = time.perf_counter()
    dashboard.example_store(db, args.scans, seed=0)
    print(f"store: {args.scans} scans built in {time.perf_counter() - t:.1f} s ({db})")
    os.environ["GUAD_DB"] = str(db)
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()  # first run: reads the store, fits the rule (cached afterwards)
    assert not at.exception, at.exception
    lo, hi, step = dashboard.slider_bounds(dashboard.load_frame(db), "cmm")
    times = []
    for i in range(args.repeats):
        value = lo + (0.2 + 0.1 * i) * (hi - lo)
        s = at.sidebar.slider(key="w_c_cmm").set_value(round(value / step) * step)
        t = time.perf_counter()
        s.run()
        times.append(time.perf_counter() - t)
        assert not at.exception, at.exception
    cut = statistics.median(times) * 1000
    f = dashboard.load_frame(db)
    sid = next(s for s in f.scan_id if (db.parent / "maps" / s).is_dir())
    at.session_state["scan"] = sid
    at.switch_page("app_pages/3_case_viewer.py").run()
    times = []
    for i in range(args.repeats):
        s = at.slider(key="w_slice").set_value(i % 10)
        t = time.perf_counter()
        s.run()
        times.append(time.perf_counter() - t)
        assert not at.exception, at.exception
    sl = statistics.median(times) * 1000
    # the slice change alone, as the fragment does it: render the panes of a new slice
    from guad import viewer
    maps = dashboard.example_maps(0, shape=(256, 256, 32))
    t = time.perf_counter()
    for i in range(args.repeats):
        dashboard.render_panes(maps, "axial", i, viewer.Window(80, 40))
    render = (time.perf_counter() - t) / args.repeats * 1000
    print(f"cut-off change, whole rerun (Operating point, {args.scans} scans): {cut:.0f} ms "
          f"(target < 300 ms)")
    print(f"slice change, whole-script rerun (Case viewer):                  {sl:.0f} ms "
          f"(target < 150 ms; the browser reruns only the fragment)")
    print(f"slice change, rendering 5 panes of a 256x256x32 scan (uncached): {render:.0f} ms")


if __name__ == "__main__":
    main()
