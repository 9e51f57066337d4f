"""guad.dashboard: the app's logic without Streamlit."""

import io
import json
import math
import zipfile

import pandas as pd
import pytest

from guad import cutoffs, dashboard, metrics, report, viewer
from guad.errors import InputError
from guad.store import Store


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("dash") / "g.duckdb"
    dashboard.example_store(path, 240, seed=1)
    return path


@pytest.fixture(scope="module")
def frame(db):
    return dashboard.load_frame(db)


def test_settings_flags_win_over_environment_and_default_is_the_demo(tmp_path):
    s = dashboard.parse_settings([], {})
    assert s.is_demo and s.max_upload_mb == dashboard.DEFAULT_MAX_UPLOAD_MB and s.data_root is None
    env = {"GUAD_DB": str(tmp_path / "e.duckdb"), "GUAD_DATA_ROOT": str(tmp_path),
           "GUAD_MAX_UPLOAD_MB": "7"}
    s = dashboard.parse_settings(["-q", "x.py"], env)  # a test runner's argv is ignored
    assert s.db == (tmp_path / "e.duckdb").resolve() and s.max_upload_mb == 7 and not s.is_demo
    s = dashboard.parse_settings(["--db", str(tmp_path / "f.duckdb"), "--max-upload-mb", "3"], env)
    assert s.db.name == "f.duckdb" and s.max_upload_bytes == 3 * 2 ** 20


def test_empty_state_says_what_the_store_is_and_how_to_point_elsewhere(tmp_path, frame):
    demo = dashboard.parse_settings([], {})
    msg = dashboard.empty_state(demo, None)
    assert "synthetic" in msg and "--db" in msg and "GUAD_DB" in msg and "python -m guad import" in msg
    own = dashboard.parse_settings(["--db", str(tmp_path / "x.duckdb")], {})
    assert "holds no scans" in dashboard.empty_state(own, frame.iloc[:0])
    assert dashboard.empty_state(own, frame) is None
    assert dashboard.load_frame(tmp_path / "missing.duckdb") is None


def test_fitted_and_manual_operating_points(frame):
    op = dashboard.fit_operating_point(frame, "paper", "0.99")
    assert op == cutoffs.choose("paper", frame, "0.99", max_candidates=400)
    m = dashboard.fit_operating_point(frame, "manual", "", 0.1, 0.2)
    assert (m.rule, m.c_cmm, m.c_fgm) == ("manual", 0.1, 0.2)
    assert dashboard.target_text("99%") == "0.99" and dashboard.target_text(">99%") == ">0.99"
    assert dashboard.target_text("other", "99.5%") == "99.5%"
    with pytest.raises(ValueError):
        dashboard.target_text("other", "lots")


def test_slider_bounds_cover_every_score_and_minus_inf_excludes_nothing(frame):
    lo, hi, step = dashboard.slider_bounds(frame, "cmm")
    s = frame["score_cmm"]
    assert lo < s.min() and hi > s.max() and step > 0
    assert dashboard.clamp_cutoff(-math.inf, (lo, hi, step)) == lo
    crit, a, b = cutoffs.frame_arrays(frame)
    assert not (a <= lo).any()  # the slider's bottom excludes nothing
    assert dashboard.clamp_cutoff(1e9, (lo, hi, step)) == hi
    assert step <= (s.max() - s.min()) / 5000  # fine enough that a shared cut-off barely moves


def test_site_metrics_and_tables_are_guad_metrics(frame):
    op = cutoffs.OperatingPoint("manual", "manual", 0.12, 0.09)
    ev = dashboard.site_metrics(frame, op, "test")
    assert list(ev["site"]) == ["site_a", "site_b", "site_c", "all"]
    test = frame[frame.split == "test"]
    for site, g in list(test.groupby("site")) + [("all", test)]:
        want = metrics.operating_point(*cutoffs.frame_arrays(g), 0.12, 0.09)
        row = dashboard.metric_table(ev).set_index("site").loc[site]
        for key, label in dashboard.SHOWN_RATES:
            assert row[label] == report.fmt_rate(want[f"{key}_k"], want[f"{key}_n"],
                                                 want[f"{key}_lo"], want[f"{key}_hi"])
    cmp = dashboard.model_comparison(frame, op, "test").set_index("model")
    crit, a, b = cutoffs.frame_arrays(test)
    alone = metrics.rates(**metrics.confusion(crit, a <= 0.12))
    assert cmp.loc["CMM", "npv_k"] == alone["npv_k"] and cmp.loc["CMM", "npv_n"] == alone["npv_n"]
    assert cmp.loc["Ensemble", "wlr_k"] == metrics.operating_point(crit, a, b, .12, .09)["wlr_k"]
    t1, t2 = dashboard.paper_tables(frame, op, "test")
    assert list(t1.columns) == ["site_a", "site_b", "site_c", "all"]
    assert list(t2.index) == ["FGM", "CMM", "Ensemble"]


def test_curve_has_each_model_and_an_ensemble_frontier(frame):
    cv = dashboard.curve_data(frame, "test", grid=30)
    assert set(cv) == {"cmm", "fgm", "ensemble"}
    e = cv["ensemble"]
    assert len(e) > 3 and e["wlr"].is_monotonic_increasing
    assert (e["npv"].diff().dropna() <= 1e-12).all()  # a frontier: NPV falls as WLR grows
    assert cv["cmm"]["wlr"].max() <= 1.0


def test_filters_and_selection_to_scan(frame):
    f = dashboard.filter_frame(frame, sites=["site_a"], splits=["test"], findings=["none", "ich"])
    assert set(f.site) == {"site_a"} and set(f.finding) <= {"", "ich"}
    ev = {"selection": {"points": [{"curve_number": 2, "point_index": 4,
                                    "customdata": ["s00042", "site_a", "ich"]}]}}
    assert dashboard.scan_from_selection(ev) == "s00042"
    assert dashboard.scan_from_selection({"selection": {"points": []}}) is None
    assert dashboard.scan_from_selection(None) is None
    table = frame.iloc[5:10]
    assert dashboard.scan_from_rows({"selection": {"rows": [2]}}, table) == table.iloc[2].scan_id
    assert dashboard.scan_from_rows({"selection": {"rows": []}}, table) is None


def test_missed_criticals_with_latest_review(db, frame):
    op = cutoffs.OperatingPoint("manual", "manual", 0.2, 0.2)
    missed = dashboard.missed_criticals(frame, op, "test")
    crit, a, b = cutoffs.frame_arrays(frame[frame.split == "test"])
    assert len(missed) == metrics.operating_point(crit, a, b, 0.2, 0.2)["fn"] > 0
    sid = missed.iloc[0].scan_id
    store = Store(db)
    store.add_review(sid, "label_error", "first look", "dr a")
    store.add_review(sid, "true_miss", "second look", "dr b")
    m2 = dashboard.missed_criticals(frame, op, "test", store.reviews()).set_index("scan_id")
    assert m2.loc[sid, "verdict"] == "true_miss" and m2.loc[sid, "reviewer"] == "dr b"
    csv = pd.read_csv(io.StringIO(dashboard.missed_csv(m2.reset_index(), op)))
    assert len(csv) == len(missed) and "verdict" in csv and set(csv.rule) == {"manual"}
    assert dashboard.missed_summary(missed)["missed"].sum() == len(missed)


def test_exports_json_and_csv(frame):
    op = cutoffs.OperatingPoint("paper", "99%", -math.inf, 0.1)
    ev = dashboard.site_metrics(frame, op, "test")
    doc = json.loads(dashboard.operating_point_json(op, ev, "mine"))
    assert doc["cmm"] == {"cutoff": None, "excludes_nothing": True} and doc["fgm"]["cutoff"] == 0.1
    assert doc["metrics"]["all"]["npv"]["n"] == 0 and doc["metrics"]["all"]["npv"]["value"] is None
    csv = pd.read_csv(io.StringIO(dashboard.operating_point_csv(ev)))
    assert set(csv.metric) == {"NPV", "WLR", "Sensitivity", "Excluded"} and len(csv) == 16


def test_url_params_round_trip_and_bad_values_are_dropped():
    state = {"page": "case-viewer", "site": "site_a", "rule": "manual", "target": ">0.99",
             "c_cmm": 0.125, "c_fgm": -math.inf, "scan": "s1", "slice": 7, "plane": "coronal"}
    q = dashboard.encode_params(state)
    assert q["c_fgm"] == "-inf" and q["slice"] == "7"
    assert dashboard.decode_params(q) == state
    bad = dashboard.decode_params({"rule": "nope", "target": "lots", "c_cmm": "x",
                                   "slice": "-3a", "plane": "oblique"})
    assert bad == {}


def test_panes_are_labelled_and_strongest_slice_follows_the_maps():
    maps = dashboard.example_maps()
    panes = dashboard.render_panes(maps, "axial", 8, viewer.Window.preset("brain"))
    assert set(panes) == {k for k, _ in dashboard.PANES}
    assert all(p.ndim == 3 and p.shape[2] == 3 and p.shape[1] >= 256 for p in panes.values())
    assert dashboard.strongest_slice(maps, "axial") == 8  # the blob sits at 2/3 of 12 slices
    overlay = panes["cmm_map"]
    assert (overlay[..., 0].astype(int) - overlay[..., 2] > 100).any()  # red blob
    op = cutoffs.OperatingPoint("manual", "manual", 0.1, 0.1)
    assert dashboard.score_verdict(0.05, 0.1, op)["excluded"]
    assert not dashboard.score_verdict(0.05, math.nan, op)["excluded"]


def test_maps_location(tmp_path):
    assert dashboard.maps_location(tmp_path / "g.duckdb", "s1") == (tmp_path.resolve() / "maps", "s1")
    assert dashboard.maps_location(tmp_path / "g.duckdb", "s1", "/x/y/z") == (
        __import__("pathlib").Path("/x/y"), "z")


def test_upload_size_and_path_under_root(tmp_path):
    dashboard.check_upload_size(10, 10)
    with pytest.raises(InputError, match="limited to"):
        dashboard.check_upload_size(11 * 2 ** 20, 10 * 2 ** 20, "big.nii.gz")
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.nii.gz").write_bytes(b"1")
    (tmp_path / "secret.nii").write_bytes(b"1")
    (root / "link.nii").symlink_to(tmp_path / "secret.nii")
    assert dashboard.path_under_root("a/x.nii.gz", root) == (root / "a" / "x.nii.gz").resolve()
    for bad in ("../secret.nii", str(tmp_path / "secret.nii"), "link.nii"):
        with pytest.raises(InputError, match="outside the data root"):
            dashboard.path_under_root(bad, root)
    with pytest.raises(InputError, match="no such file"):
        dashboard.path_under_root("a/none.nii", root)
    with pytest.raises(InputError, match="no data root"):
        dashboard.path_under_root("a/x.nii.gz", None)
    assert dashboard.list_under_root(root) == ["a/x.nii.gz", "link.nii"]


def _zip(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_uploads_are_saved_and_zips_unpacked_safely(tmp_path):
    p = dashboard.save_upload("dir/scan.nii.gz", b"abc", tmp_path / "u1")
    assert p == tmp_path / "u1" / "scan.nii.gz" and p.read_bytes() == b"abc"
    folder = dashboard.save_upload("s.zip", _zip({"series/1.dcm": b"a", "series/2.dcm": b"b",
                                                  "readme.txt": b"c"}), tmp_path / "u2")
    assert folder.name == "series" and len(list(folder.iterdir())) == 2
    with pytest.raises(InputError, match="outside"):
        dashboard.save_upload("evil.zip", _zip({"../../evil.dcm": b"x"}), tmp_path / "u3")
    with pytest.raises(InputError, match="not a readable zip"):
        dashboard.save_upload("bad.zip", b"not a zip", tmp_path / "u4")
    with pytest.raises(InputError, match="not a NIfTI"):
        dashboard.save_upload("x.txt", b"x", tmp_path / "u5")
    assert dashboard.new_scan_id("/a/b/my scan.nii.gz", ["upload-my_scan"]) == "upload-my_scan-2"


def test_add_scored_scan_lands_in_the_frame(tmp_path):
    db = tmp_path / "new.duckdb"
    dashboard.add_scored_scan(db, "upload-x", "critical", None, {"cmm": 0.3, "fgm": 0.2}, "ich",
                              str(tmp_path / "maps" / "upload-x"))
    f = dashboard.load_frame(db).set_index("scan_id")
    assert f.loc["upload-x", "site"] == "uploads" and f.loc["upload-x", "score_fgm"] == 0.2
    assert f.loc["upload-x", "maps_path"] == str((tmp_path / "maps" / "upload-x").resolve())
    with pytest.raises(ValueError):
        dashboard.add_scored_scan(db, "y", "weird", None, {"cmm": 1, "fgm": 1})


def test_demo_notice_says_synthetic_and_names_the_sampler(tmp_path):
    from guad.paths import DEMO_DB
    from guad.store import Store

    own = dashboard.parse_settings(["--db", str(tmp_path / "x.duckdb")], environ={})
    assert dashboard.demo_notice(own) is None
    demo = dashboard.parse_settings([], environ={})
    assert demo.is_demo
    text = dashboard.demo_notice(demo)
    assert "synthetic" in text and "--db" in text and "GUAD_DB" in text
    if DEMO_DB.exists():
        runs = Store(DEMO_DB).runs()
        for sampler in runs.sampler:
            assert sampler in text


def test_unreachable_rule_says_it_excludes_nothing():
    from guad.cutoffs import OperatingPoint

    inf = float("inf")
    note = dashboard.unreachable_note(OperatingPoint("paper", "99%", -inf, 12.0))
    assert "excludes nothing" in note and "99%" in note and "paper" in note
    assert dashboard.unreachable_note(OperatingPoint("paper", "99%", 3.0, 12.0)) is None
    assert dashboard.unreachable_note(OperatingPoint("manual", "", -inf, -inf)) is None
