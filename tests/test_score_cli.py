"""`python -m guad score`: fills the store, records failures, resumes after SIGKILL, shards under torchrun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from guad.commands.score import scan_seed
from guad.store import Store


def score_cmd(manifest, db, ckpts, *extra):
    return [sys.executable, "-m", "guad", "score", "--manifest", str(manifest), "--db", str(db),
            "--cmm", str(ckpts["cmm"]), "--fgm", str(ckpts["fgm"]), "--sampler", "ddim:2", *extra]


def test_score_fills_store_records_failure_and_rerun_writes_nothing(small_manifest, tiny_checkpoints, tmp_path):
    db = tmp_path / "s.duckdb"
    maps = tmp_path / "maps"
    subprocess.run(score_cmd(small_manifest, db, tiny_checkpoints, "--maps", str(maps)), check=True)
    scores = Store(db).scores()
    assert len(scores) == 5 * 2  # 4 good scans + 1 broken, two models each
    assert scores.groupby(["scan_id", "model"]).size().max() == 1
    bad = scores[scores.scan_id == "broken"]
    assert (bad.status == "failed").all() and bad.score.isna().all()
    assert bad.error.str.contains("broken.nii.gz").all()
    good = scores[scores.scan_id != "broken"]
    assert (good.status == "ok").all() and (good.score >= 0).all()
    runs = Store(db).runs()
    assert set(runs.model) == {"cmm", "fgm"} and set(runs.sampler) == {"ddim:2"} and runs.finished.notna().all()
    # a DDIM run records which eps it stepped on, so scores of the older raw-eps DDIM never resume it
    assert runs.params.str.contains("from-clamped-x0").all()
    # viewer maps for every good scan
    for sid in good.scan_id.unique():
        assert (maps / sid / "fgm_map.nii.gz").exists() and (maps / sid / "input_hu.nii.gz").exists()
    # a rerun resumes the same runs and writes nothing twice
    before = scores.sort_values(["scan_id", "model"]).reset_index(drop=True)
    subprocess.run(score_cmd(small_manifest, db, tiny_checkpoints), check=True)
    after = Store(db).scores().sort_values(["scan_id", "model"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)


def test_same_scan_same_score_in_another_store(small_manifest, tiny_checkpoints, tmp_path):
    for name in ("a", "b"):
        subprocess.run(score_cmd(small_manifest, tmp_path / f"{name}.duckdb", tiny_checkpoints, "--batch", "3" if name == "a" else "1"),
                       check=True)
    a = Store(tmp_path / "a.duckdb").scores().set_index(["scan_id", "model"]).score
    b = Store(tmp_path / "b.duckdb").scores().set_index(["scan_id", "model"]).score
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index(), rtol=1e-6)


def test_killed_job_rerun_leaves_one_row_per_scan_and_model(small_manifest, tiny_checkpoints, tmp_path):
    db = tmp_path / "k.duckdb"
    proc = subprocess.Popen(score_cmd(small_manifest, db, tiny_checkpoints, "--batch", "1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if db.exists():
            try:
                n = len(Store(db, read_timeout=2).scores())
            except Exception:  # noqa: BLE001 - the writer may hold the file this instant
                continue
            if n >= 2:
                break
    assert proc.poll() is None, "the job finished before it could be killed; make the manifest longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(Store(db).scores())
    assert 2 <= partial < 10
    subprocess.run(score_cmd(small_manifest, db, tiny_checkpoints, "--batch", "1"), check=True)
    scores = Store(db).scores()
    assert len(scores) == 10
    assert scores.groupby(["scan_id", "model"]).size().eq(1).all()


def test_torchrun_two_processes_share_the_work(small_manifest, tiny_checkpoints, tmp_path):
    db = tmp_path / "t.duckdb"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "guad"] + score_cmd(small_manifest, db, tiny_checkpoints)[3:]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rank 0/2" in out.stderr and "rank 1/2" in out.stderr
    scores = Store(db).scores()
    assert len(scores) == 10 and scores.groupby(["scan_id", "model"]).size().eq(1).all()


def test_scan_seed_depends_only_on_job_seed_and_scan():
    assert scan_seed(0, "a") == scan_seed(0, "a")
    assert scan_seed(0, "a") != scan_seed(1, "a") != scan_seed(0, "b")
    assert 0 <= scan_seed(123, "x") < 2**31


def test_maps_command_remakes_the_maps_the_scorer_saved(small_manifest, tiny_checkpoints, tmp_path):
    """`guad maps` uses the store's runs (sampler, seed): its maps equal the scorer's own."""
    import numpy as np

    from guad.maps import has_input, load_case

    db = tmp_path / "m.duckdb"
    subprocess.run(score_cmd(small_manifest, db, tiny_checkpoints, "--maps", str(tmp_path / "a")), check=True)
    sid = Store(db).scores().query("status == 'ok'").scan_id.iloc[0]
    out = subprocess.run([sys.executable, "-m", "guad", "maps", "--db", str(db), "--scans", sid,
                          "--out", str(tmp_path / "b"), "--no-input",
                          "--cmm", str(tiny_checkpoints["cmm"]), "--fgm", str(tiny_checkpoints["fgm"])],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert not has_input(tmp_path / "b", sid)
    a = load_case(tmp_path / "a", sid)
    b = load_case(tmp_path / "b", sid, a.input_hu, a.affine)
    for m in ("cmm", "fgm"):
        np.testing.assert_array_equal(a.signed[m], b.signed[m])


def test_demo_selection_lists_misses_first():
    import pandas as pd

    from guad.demo import select

    rows = []
    for i in range(40):  # validation: criticals score high, unremarkables low
        crit = i % 4 == 0
        rows.append({"scan_id": f"v{i:02d}", "split": "val", "label": "critical" if crit else "normal",
                     "finding": "ich" if crit else "", "critical": crit,
                     "score_cmm": 10.0 + i if crit else float(i % 7), "score_fgm": 10.0 + i if crit else float(i % 5)})
    rows.append({"scan_id": "t-miss", "split": "test", "label": "critical", "finding": "sdh", "critical": True,
                 "score_cmm": 0.0, "score_fgm": 0.0})
    rows.append({"scan_id": "t-hit", "split": "test", "label": "critical", "finding": "sdh", "critical": True,
                 "score_cmm": 99.0, "score_fgm": 99.0})
    rows.append({"scan_id": "t-xfp", "split": "test", "label": "normal", "finding": "", "critical": False,
                 "score_cmm": 99.0, "score_fgm": 0.0})
    rows.append({"scan_id": "t-tn", "split": "test", "label": "normal", "finding": "", "critical": False,
                 "score_cmm": 0.0, "score_fgm": 0.0})
    rows.append({"scan_id": "t-xfp2", "split": "test", "label": "normal", "finding": "", "critical": False,
                 "score_cmm": 999.0, "score_fgm": 0.0})
    frame = pd.DataFrame(rows)
    ids = select(frame, per_group=1)
    assert ids[0] == "t-miss"  # misses first, then a few of each kind, then false positives
    assert ids.index("t-hit") < ids.index("t-xfp2") < ids.index("t-xfp")  # most anomalous FP first
    assert len(ids) == len(set(ids))
    assert select(frame, per_group=1, max_scans=2) == ids[:2]


def test_t0_option_is_recorded_and_parsed():
    from guad.commands.score import parse_t0

    class M:
        def __init__(self, t0):
            self.t0 = t0

    models = {"cmm": M(400), "fgm": M(500)}
    assert parse_t0(None, models) == {"cmm": 400, "fgm": 500}
    assert parse_t0("250", models) == {"cmm": 250, "fgm": 250}
    assert parse_t0("fgm=300", models) == {"cmm": 400, "fgm": 300}
    with pytest.raises(ValueError):
        parse_t0("ct=3", models)
    with pytest.raises(ValueError):
        parse_t0("0", models)


def test_bf16_precision_is_its_own_run_and_deterministic(small_manifest, tiny_checkpoints, tmp_path):
    subprocess.run(score_cmd(small_manifest, tmp_path / "a.duckdb", tiny_checkpoints), check=True)
    for name in ("a", "b"):
        subprocess.run(score_cmd(small_manifest, tmp_path / f"{name}.duckdb", tiny_checkpoints,
                                 "--precision", "bf16"), check=True)
    runs = Store(tmp_path / "a.duckdb").runs()
    assert len(runs) == 4  # fp32 and bf16 runs of each model, kept apart
    assert runs.params.str.contains('"precision": "bf16"').sum() == 2
    a = Store(tmp_path / "a.duckdb").scores().merge(runs[["run_id", "params"]], on="run_id")
    a = a[a.params.str.contains("bf16")].set_index(["scan_id", "model"]).score.sort_index()
    b = Store(tmp_path / "b.duckdb").scores().set_index(["scan_id", "model"]).score.sort_index()
    pd.testing.assert_series_equal(a, b)  # the same scans in bf16 give the same scores
