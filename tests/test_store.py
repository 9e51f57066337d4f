import math
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from guad.store import SCHEMA, Store, read_manifest, run_key


def write_manifest(folder, rows=None):
    rows = rows or [
        ("a", "a.nii.gz", "s1", "val", "normal", "", "", "1"),
        ("b", "b.nii.gz", "s1", "test", "critical", "ich", "3.5", "2"),
        ("c", "", "s2", "test", "benign", "lacune", "", ""),
    ]
    p = folder / "manifest.csv"
    pd.DataFrame(rows, columns=["scan_id", "path", "site", "split", "label", "finding",
                                "lesion_ml", "seed"]).to_csv(p, index=False)
    return p


@pytest.fixture
def store(tmp_path):
    st = Store(tmp_path / "db" / "guad.duckdb").init()
    st.import_tables(read_manifest(write_manifest(tmp_path)))
    return st


def test_schema_file_is_the_one_schema_and_init_is_idempotent(tmp_path):
    st = Store(tmp_path / "x.duckdb").init().init()
    with st.read() as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables")
                  .fetchall()}
    assert {"scans", "scoring_runs", "scores", "operating_points", "reviews"} <= tables
    assert SCHEMA.name == "schema.sql" and "CREATE TABLE IF NOT EXISTS scores" in SCHEMA.read_text()


def test_reading_a_missing_database_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="no database here"):
        Store(tmp_path / "nope.duckdb").frame()


def test_scans_and_paths_are_stored_relative_to_the_database(store, tmp_path):
    with store.read() as con:
        stored = dict(con.execute("SELECT scan_id, path FROM scans").fetchall())
    assert stored["a"] == "../a.nii.gz" and stored["c"] is None
    # the whole folder moves: paths still resolve
    shutil.copytree(tmp_path, tmp_path.parent / "moved")
    moved = Store(tmp_path.parent / "moved" / "db" / "guad.duckdb")
    assert moved.scans().set_index("scan_id").loc["a", "path"] == str(
        (tmp_path.parent / "moved" / "a.nii.gz").resolve())


def test_run_key_is_deterministic_and_ensure_run_resumes(store):
    k = run_key("cmm", "sha1", "ddim-50", 400, 0)
    assert k == run_key("cmm", "sha1", "ddim-50", 400, 0) and k.startswith("cmm-")
    assert k != run_key("cmm", "sha1", "ddim-50", 400, 1)
    assert store.ensure_run("cmm", "sha1", "ddim-50", 400, 0) == k
    assert store.ensure_run("cmm", "sha1", "ddim-50", 400, 0) == k  # same job, same run
    assert len(store.runs()) == 1
    with pytest.raises(ValueError):
        store.ensure_run("xyz", "sha1", "ddim", 1, 0)


def test_write_scores_is_resumable_and_retries_failures(store):
    rid = store.ensure_run("fgm", "sha1", "ddim-50", 500, 0)
    assert store.missing_scans(rid) == ["a", "b", "c"]
    assert store.missing_scans(rid, split="test") == ["b", "c"]
    n = store.write_scores(rid, [{"scan_id": "a", "score": 0.2, "seconds": 1.5},
                                 {"scan_id": "b", "score": np.nan, "error": "b.nii.gz: 2D"}])
    assert n == 2
    assert store.missing_scans(rid) == ["c"]
    assert store.missing_scans(rid, retry_failed=True) == ["b", "c"]
    # the rerun writes a again (ignored: never twice) and b again (now ok: replaces failure)
    assert store.write_scores(rid, [{"scan_id": "a", "score": 9.9},
                                    {"scan_id": "b", "score": 0.7}]) == 1
    # a failure never overwrites an ok score
    assert store.write_scores(rid, [{"scan_id": "a", "score": None, "status": "failed"}]) == 0
    sc = store.scores(rid).set_index("scan_id")
    assert len(sc) == 2 and sc.loc["a", "score"] == 0.2 and sc.loc["b", "score"] == 0.7
    assert sc.loc["b", "status"] == "ok"
    store.finish_run(rid)
    r = store.runs().iloc[0]
    assert r["n_ok"] == 2 and r["n_failed"] == 0 and not pd.isna(r["finished"])


def test_write_scores_rejects_bad_rows_atomically(store):
    rid = store.ensure_run("cmm", "sha1", "ddim", 400, 0)
    with pytest.raises(ValueError, match="unknown scan 'zzz'"):
        store.write_scores(rid, [{"scan_id": "a", "score": 1.0}, {"scan_id": "zzz", "score": 2.0}])
    with pytest.raises(ValueError, match="non-finite"):
        store.write_scores(rid, [{"scan_id": "a", "score": np.inf, "status": "ok"}])
    with pytest.raises(ValueError, match="unknown run"):
        store.write_scores("cmm-nope", [{"scan_id": "a", "score": 1.0}])
    assert store.scores().empty  # the batch with one bad row wrote nothing


def test_the_schema_itself_refuses_an_ok_row_without_a_score(store):
    rid = store.ensure_run("cmm", "sha1", "ddim", 400, 0)
    with pytest.raises(duckdb.ConstraintException):
        with store.write() as con:
            con.execute("INSERT INTO scores (scan_id, model, run_id, score, status) "
                        "VALUES ('a', 'cmm', ?, NULL, 'ok')", [rid])


def test_frame_takes_latest_ok_score_per_model_or_pinned_runs(store):
    old = store.ensure_run("cmm", "old", "ddim", 400, 0)
    store.write_scores(old, [{"scan_id": "a", "score": 1.0}, {"scan_id": "b", "score": 2.0}])
    new = store.ensure_run("cmm", "new", "ddim", 400, 0)
    store.write_scores(new, [{"scan_id": "a", "score": 10.0},
                             {"scan_id": "b", "score": None, "error": "boom"}])
    fgm = store.ensure_run("fgm", "f", "ddim", 500, 0)
    store.write_scores(fgm, [{"scan_id": "c", "score": 0.5}])
    f = store.frame().set_index("scan_id")
    assert list(f.columns[:7]) == ["site", "split", "label", "finding", "critical",
                                   "score_cmm", "score_fgm"]
    assert f["critical"].dtype == bool and f.loc["b", "critical"]
    assert f.loc["a", "score_cmm"] == 10.0 and f.loc["a", "run_cmm"] == new  # newest run
    assert f.loc["b", "score_cmm"] == 2.0   # newest run failed on b: latest OK score
    assert math.isnan(f.loc["c", "score_cmm"]) and f.loc["c", "score_fgm"] == 0.5
    pinned = store.frame({"cmm": old}).set_index("scan_id")
    assert pinned.loc["a", "score_cmm"] == 1.0 and pinned.loc["c", "score_fgm"] == 0.5


def test_operating_points_and_reviews(store):
    i = store.save_operating_point("strict", "paper", 0.1, float("-inf"), ">99%", "dr x", "n")
    j = store.save_operating_point("manual", "manual", 0.3, 0.4)
    assert j == i + 1
    ops = store.operating_points().set_index("op_id")
    assert ops.loc[i, "c_fgm"] == float("-inf") and ops.loc[i, "target"] == ">99%"
    with pytest.raises(ValueError):
        store.save_operating_point("bad", "manual", float("nan"), 0.1)
    r = store.add_review("b", "true_miss", "missed bleed", "dr y")
    assert store.reviews("b").set_index("review_id").loc[r, "verdict"] == "true_miss"
    with pytest.raises(ValueError, match="verdict"):
        store.add_review("b", "maybe")
    with pytest.raises(ValueError, match="unknown scan"):
        store.add_review("nope", "other")
    assert len(store.reviews()) == 1


def test_reimport_updates_a_label_after_scoring(store, tmp_path):
    rid = store.ensure_run("cmm", "sha1", "ddim", 400, 0)
    store.write_scores(rid, [{"scan_id": "c", "score": 1.0}])
    p = write_manifest(tmp_path, [("c", "", "s2", "test", "critical", "sdh", "", "")])
    store.import_tables(read_manifest(p))
    f = store.frame().set_index("scan_id")
    assert f.loc["c", "label"] == "critical" and f.loc["c", "score_cmm"] == 1.0
    assert len(f) == 3
