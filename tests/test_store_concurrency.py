"""A real scoring writer and a real app-like reader on one DuckDB file at the same time.

DuckDB refuses a read-only open while another process writes (and vice versa); the store's
short transactions + retrying opens must hide that completely: no lock error on either side,
and the reader only ever sees whole batches.
"""

import json
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from guad.store import Store, StoreBusyError, read_manifest

BATCHES, PER_BATCH = 40, 25

WRITER = textwrap.dedent("""
    import sys, time
    from guad.store import Store
    st = Store(sys.argv[1])
    rid = st.ensure_run("cmm", "ckpt", "ddim-50", 400, 0)
    for b in range(int(sys.argv[2])):
        rows = [{"scan_id": f"b{b:03d}-{i:02d}", "score": b + i / 100, "seconds": 0.1}
                for i in range(int(sys.argv[3]))]
        assert st.write_scores(rid, rows) == len(rows)
    st.finish_run(rid)
    print(st.lock_waits)
""")

READER = textwrap.dedent("""
    import json, sys, time
    from guad.store import Store
    st = Store(sys.argv[1])
    total, per = int(sys.argv[2]) * int(sys.argv[3]), int(sys.argv[3])
    seen, bad, reads = [], [], 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        f = st.frame()                       # the app's read: scans + latest scores
        reads += 1
        scored = f.loc[f["score_cmm"].notna(), "scan_id"]
        per_batch = scored.str[1:4].astype(int).value_counts()
        n = len(scored)
        # whole batches only, and batches land in order: 0..k-1 all complete
        if (per_batch != per).any() or sorted(per_batch.index) != list(range(len(per_batch))):
            bad.append(n)
        if not seen or seen[-1] != n:
            seen.append(n)
        if n == total:
            break
    print(json.dumps({"seen": seen, "bad": bad, "reads": reads, "lock_waits": st.lock_waits}))
""")


def test_writer_and_reader_processes_at_once(tmp_path):
    db = tmp_path / "guad.duckdb"
    ids = [f"b{b:03d}-{i:02d}" for b in range(BATCHES) for i in range(PER_BATCH)]
    pd.DataFrame({"scan_id": ids, "site": "s", "split": "test", "label": "normal"}).to_csv(
        tmp_path / "m.csv", index=False)
    Store(db).import_tables(read_manifest(tmp_path / "m.csv"))

    args = [str(db), str(BATCHES), str(PER_BATCH)]
    t0 = time.monotonic()
    reader = subprocess.Popen([sys.executable, "-c", READER, *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    w_out, w_err = writer.communicate(timeout=90)
    r_out, r_err = reader.communicate(timeout=90)
    elapsed = time.monotonic() - t0

    assert writer.returncode == 0, w_err
    assert reader.returncode == 0, r_err
    assert "lock" not in w_err.lower() and "lock" not in r_err.lower()
    res = json.loads(r_out)
    assert res["bad"] == [], f"reader saw a partial batch: {res}"
    assert res["seen"][-1] == BATCHES * PER_BATCH
    assert all(n % PER_BATCH == 0 for n in res["seen"])
    # the two really overlapped: the reader saw the writer mid-way, more than once
    intermediate = [n for n in res["seen"] if 0 < n < BATCHES * PER_BATCH]
    assert len(intermediate) >= 2, res
    st = Store(db)
    assert len(st.scores()) == BATCHES * PER_BATCH
    assert not pd.isna(st.runs().loc[0, "finished"])
    print(f"\n{elapsed:.1f} s, reader {res['reads']} reads, states {len(res['seen'])}, "
          f"lock waits: reader {res['lock_waits']}, writer {w_out.strip()}")


HOLDER = textwrap.dedent("""
    import sys, time
    from guad.store import Store
    with Store(sys.argv[1]).write() as con:
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def test_reader_waits_out_a_writer_then_gives_up_only_past_its_deadline(tmp_path):
    db = tmp_path / "guad.duckdb"
    Store(db).init()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), "2.0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreBusyError, match="still locked"):
            Store(db, read_timeout=0.3).scans()
        patient = Store(db, read_timeout=30)
        t = time.monotonic()
        assert patient.scans().empty          # waited for the writer, then read
        assert patient.lock_waits > 0 and time.monotonic() - t > 0.5
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0
