"""The Streamlit app driven through AppTest: every page, its widgets, and the numbers shown
checked against guad.metrics on the same store."""

import gzip
import sys
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from guad import cutoffs, dashboard, metrics, report
from guad.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")
P = {"explorer": "app_pages/2_score_explorer.py", "viewer": "app_pages/3_case_viewer.py",
     "missed": "app_pages/4_missed_criticals.py", "score": "app_pages/5_score_a_scan.py"}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("app") / "g.duckdb"
    dashboard.example_store(path, 240, seed=2)
    return path


@pytest.fixture
def app(db, monkeypatch):
    monkeypatch.setenv("GUAD_DB", str(db))
    monkeypatch.delenv("GUAD_DATA_ROOT", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def frame(db):
    return dashboard.load_frame(db)


def check_per_site(at, f, c_cmm, c_fgm):
    test = f[f.split == "test"]
    t = at.dataframe[0].value.set_index("site")
    for site, g in list(test.groupby("site")) + [("all", test)]:
        want = metrics.operating_point(*cutoffs.frame_arrays(g), c_cmm, c_fgm)
        for key, label in dashboard.SHOWN_RATES:
            assert t.loc[site, label] == report.fmt_rate(
                want[f"{key}_k"], want[f"{key}_n"], want[f"{key}_lo"], want[f"{key}_hi"])
    return t


def test_operating_point_page_shows_guad_metrics_and_follows_the_widgets(app, db):
    at, f = app, frame(db)
    op = cutoffs.choose("paper", f, "0.99", max_candidates=400)
    before = check_per_site(at, f, op.c_cmm, op.c_fgm)
    want = metrics.operating_point(*cutoffs.frame_arrays(f[f.split == "test"]), op.c_cmm, op.c_fgm)
    assert at.metric[0].value == report.fmt_pct(want["npv"]) if want["npv_n"] else "n/a"
    assert at.metric[1].value == report.fmt_pct(want["wlr"])

    at.sidebar.selectbox(key="w_rule").set_value("joint").run()
    op = cutoffs.choose("joint", f, "0.99", max_candidates=400)
    check_per_site(at, f, op.c_cmm, op.c_fgm)
    at.sidebar.selectbox(key="w_target_choice").set_value("98%").run()
    op = cutoffs.choose("joint", f, "0.98", max_candidates=400)
    check_per_site(at, f, op.c_cmm, op.c_fgm)
    assert at.query_params["rule"] == "joint" and at.query_params["target"] == "0.98"

    # dragging a cut-off switches to manual and the numbers follow the sliders
    s_cmm, s_fgm = at.sidebar.slider(key="w_c_cmm"), at.sidebar.slider(key="w_c_fgm")
    s_cmm.set_value(float(np.quantile(f.score_cmm, 0.6))).run()
    assert not at.exception
    assert at.sidebar.selectbox(key="w_rule").value == "manual"
    c_cmm, c_fgm = at.sidebar.slider(key="w_c_cmm").value, at.sidebar.slider(key="w_c_fgm").value
    after = check_per_site(at, f, c_cmm, c_fgm)
    assert not after.equals(before)
    assert float(at.query_params["c_cmm"]) == c_cmm

    # each model alone beside the ensemble
    cmp = at.dataframe[1].value.set_index("model")
    crit, a, b = cutoffs.frame_arrays(f[f.split == "test"])
    r = metrics.rates(**metrics.confusion(crit, b <= c_fgm))
    assert cmp.loc["FGM", "NPV"] == report.fmt_rate(int(r["npv_k"]), int(r["npv_n"]),
                                                    float(r["npv_lo"]), float(r["npv_hi"]))
    # Table 1 / Table 2 are there for the current point
    assert list(at.dataframe[2].value.columns) == ["site_a", "site_b", "site_c", "all"]

    # per-site metric cards
    at.segmented_control(key="w_site").set_value("site_b").run()
    g = f[(f.split == "test") & (f.site == "site_b")]
    w = metrics.operating_point(*cutoffs.frame_arrays(g), c_cmm, c_fgm)
    assert at.metric[1].value == report.fmt_pct(w["wlr"]) and at.query_params["site"] == "site_b"

    # save a named operating point
    at.text_input[0].set_value("my point")
    at.text_input[1].set_value("dr test")
    at.button[0].click().run()
    assert not at.exception and "Saved operating point" in at.success[0].value
    ops = Store(db).operating_points()
    assert ops.iloc[0]["name"] == "my point" and ops.iloc[0]["c_cmm"] == c_cmm


def test_any_npv_target_and_a_bad_one(app, db):
    at, f = app, frame(db)
    at.sidebar.selectbox(key="w_target_choice").set_value("other").run()
    at.sidebar.text_input(key="w_target_other").set_value("95%").run()
    op = cutoffs.choose("paper", f, "95%", max_candidates=400)
    check_per_site(at, f, op.c_cmm, op.c_fgm)
    at.sidebar.text_input(key="w_target_other").set_value("lots").run()
    assert not at.exception and "expected e.g." in at.sidebar.error[0].value


def test_a_shared_link_reopens_the_same_view(db, monkeypatch):
    monkeypatch.setenv("GUAD_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"rule": "manual", "c_cmm": "0.1", "c_fgm": "0.08", "site": "site_c"})
    at.run()
    assert at.sidebar.selectbox(key="w_rule").value == "manual"
    lo, hi, step = dashboard.slider_bounds(frame(db), "cmm")
    assert at.sidebar.slider(key="w_c_cmm").value == dashboard.clamp_cutoff(0.1, (lo, hi, step))
    assert at.segmented_control(key="w_site").value == "site_c"


def test_score_explorer_filters(app, db):
    at, f = app, frame(db)
    at.switch_page(P["explorer"]).run()
    assert not at.exception
    n_test = int((f.split == "test").sum())
    assert f"{n_test} scans shown" in at.caption[0].value
    at.multiselect(key="x_sites").set_value(["site_a"]).run()
    at.multiselect(key="x_findings").set_value(["ich"]).run()
    n = int(((f.split == "test") & (f.site == "site_a") & (f.finding == "ich")).sum())
    assert not at.exception and f"{n} scans shown" in at.caption[0].value


def maps_scan(db):
    f = frame(db)
    return next(s for s in f.scan_id if (Path(db).parent / "maps" / s).is_dir())


def test_case_viewer_shows_every_pane_and_shares_slice_and_window(app, db):
    at, f = app, frame(db)
    sid = maps_scan(db)
    at.query_params.update({"scan": sid})
    at.session_state["scan"] = sid
    at.switch_page(P["viewer"]).run()
    assert not at.exception
    assert len(at.get("image")) == 5  # input, two reconstructions, two maps
    row = f.set_index("scan_id").loc[sid]
    assert at.metric[0].value == f"{row.score_cmm:.5g}" and at.metric[1].value == f"{row.score_fgm:.5g}"
    maps = dashboard.example_maps(2)
    # opens on the slice with the largest anomaly
    assert at.slider(key="w_slice").value == dashboard.strongest_slice(maps, "axial")
    at.slider(key="w_slice").set_value(3).run()
    assert not at.exception and at.query_params["slice"] == "3"
    at.button[0].click().run()  # jump to the largest anomaly
    assert at.slider(key="w_slice").value == dashboard.strongest_slice(maps, "axial")
    at.selectbox(key="w_preset").set_value("bone").run()
    assert (at.number_input(key="w_win_w").value, at.number_input(key="w_win_l").value) == (2500, 480)
    at.number_input(key="w_win_w").set_value(123.0).run()
    assert at.selectbox(key="w_preset").value == "custom"
    at.radio(key="w_plane").set_value("coronal").run()
    assert not at.exception and at.slider(key="w_slice").max == 47
    assert at.query_params["plane"] == "coronal"


def test_case_viewer_without_maps_explains_and_fails_cleanly(app, db, monkeypatch):
    at, f = app, frame(db)
    sid = next(s for s in f.scan_id if not (Path(db).parent / "maps" / s).exists())
    at.session_state["scan"] = sid
    at.switch_page(P["viewer"]).run()
    assert any("No saved images" in i.value for i in at.info)
    monkeypatch.setitem(sys.modules, "guad.inference", None)  # not installed
    at.button[0].click().run()
    assert not at.exception and at.error and "not available" in at.error[0].value


def test_missed_criticals_lists_the_misses_and_records_a_verdict(app, db):
    at, f = app, frame(db)
    at.query_params.update({"rule": "manual", "c_cmm": "0.2", "c_fgm": "0.2"})
    at.sidebar.slider(key="w_c_cmm").set_value(dashboard.clamp_cutoff(
        0.2, dashboard.slider_bounds(f, "cmm"))).run()
    at.sidebar.slider(key="w_c_fgm").set_value(dashboard.clamp_cutoff(
        0.2, dashboard.slider_bounds(f, "fgm"))).run()
    c_cmm, c_fgm = at.sidebar.slider(key="w_c_cmm").value, at.sidebar.slider(key="w_c_fgm").value
    at.switch_page(P["missed"]).run()
    assert not at.exception
    test = f[f.split == "test"]
    want = metrics.operating_point(*cutoffs.frame_arrays(test), c_cmm, c_fgm)["fn"]
    table_ = at.dataframe[1].value
    assert len(table_) == want > 0
    assert f"{want} of {int(test.critical.sum())} critical scans" in at.caption[0].value
    sid = at.selectbox(key="w_review_scan").value
    at.radio[0].set_value("label_error")
    at.text_area[0].set_value("looks like a calcification")
    at.text_input[0].set_value("dr review")
    at.button[1].click().run()  # the form's submit
    assert not at.exception and "Recorded 'label error'" in at.success[0].value
    r = Store(db).reviews(sid)
    assert r.iloc[-1]["verdict"] == "label_error" and r.iloc[-1]["reviewer"] == "dr review"
    assert at.dataframe[1].value.set_index("scan_id").loc[sid, "verdict"] == "label error"


def nifti_bytes(hu, affine):
    return gzip.compress(nib.Nifti1Image(hu, affine).to_bytes())


class FakeResult:
    def __init__(self, maps):
        self.scores, self.maps, self.seconds = {"cmm": 0.01, "fgm": 0.02}, maps, 0.1


def test_score_a_scan_refuses_bad_uploads_with_the_readers_message(app, db, monkeypatch):
    at = app
    at.switch_page(P["score"]).run()
    at.file_uploader[0].set_value(("broken.nii.gz", b"not a nifti at all", "application/gzip")).run()
    assert not at.exception and at.error and "broken.nii.gz" in at.error[0].value
    at.file_uploader[0].set_value(("notes.zip", b"PK nope", "application/zip")).run()
    assert not at.exception and "not a readable zip" in at.error[0].value


def test_score_a_scan_size_limit_and_data_root(db, monkeypatch, tmp_path):
    monkeypatch.setenv("GUAD_DB", str(db))
    monkeypatch.setenv("GUAD_MAX_UPLOAD_MB", "1")
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.nii.gz").write_bytes(b"x")
    monkeypatch.setenv("GUAD_DATA_ROOT", str(root))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(P["score"]).run()
    at.file_uploader[0].set_value(("big.nii.gz", b"0" * (2 ** 20 + 10), "application/gzip")).run()
    assert not at.exception and "limited to 1 MB" in at.error[0].value
    at.radio(key="src").set_value("Pick under the data root").run()
    at.text_input(key="typed").set_value("../outside.nii.gz").run()
    assert not at.exception and "outside the data root" in at.error[0].value


def test_score_a_scan_scores_shows_and_adds_to_the_store(db, monkeypatch, tmp_path):
    maps = dashboard.example_maps(0)
    fake = types.ModuleType("guad.inference")
    fake.load_models = lambda cmm=None, fgm=None, device=None: "models"

    def score_ct(ct, models, sampler=None, seed=0, progress=None, t0=None):
        progress(0.5, "half way")
        return FakeResult(maps)

    fake.score_ct = score_ct
    monkeypatch.setitem(sys.modules, "guad.inference", fake)
    new_db = tmp_path / "copy.duckdb"
    new_db.write_bytes(Path(db).read_bytes())
    monkeypatch.setenv("GUAD_DB", str(new_db))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(P["score"]).run()
    at.file_uploader[0].set_value(("head.nii.gz", nifti_bytes(maps.input_hu, maps.affine),
                                   "application/gzip")).run()
    assert not at.exception and not at.error and "Read " in at.success[0].value
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.metric[0].value == "0.01" and at.metric[1].value == "0.02"
    at.selectbox(key="add_label").set_value("critical")
    at.main.button[-1].click().run()  # "Add to the store"
    assert not at.exception and "Added upload-head" in at.success[-1].value
    f = dashboard.load_frame(new_db).set_index("scan_id")
    assert f.loc["upload-head", "site"] == "uploads" and f.loc["upload-head", "label"] == "critical"
    assert (new_db.parent / "maps" / "upload-head" / "input_hu.nii.gz").exists()


def test_empty_store_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("GUAD_DB", str(tmp_path / "none.duckdb"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception and "GUAD_DB" in at.warning[0].value and "--db" in at.warning[0].value


def test_score_a_scan_with_the_real_models_end_to_end(db, monkeypatch, tmp_path, tiny_checkpoints):
    """No fakes: a synthetic head CT uploaded, pre-processed, reconstructed and scored by real
    (tiny, random-weight) checkpoints chosen with GUAD_CMM / GUAD_FGM, with the fast x0 sampler."""
    from guad.inference import load_models, score_ct
    from guad.io import CTVolume
    from guad.synth import generate_scan

    scan = generate_scan(seed=4, finding="ich", size=96)
    new_db = tmp_path / "copy.duckdb"
    new_db.write_bytes(Path(db).read_bytes())
    monkeypatch.setenv("GUAD_DB", str(new_db))
    monkeypatch.setenv("GUAD_CMM", str(tiny_checkpoints["cmm"]))
    monkeypatch.setenv("GUAD_FGM", str(tiny_checkpoints["fgm"]))
    monkeypatch.setenv("GUAD_SAMPLER", "x0")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(P["score"]).run()
    at.file_uploader[0].set_value(("ich.nii.gz", nifti_bytes(scan.hu, scan.affine), "application/gzip")).run()
    assert not at.exception and not at.error
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    # the page shows what guad.inference computes for the same file, models, sampler and seed
    want = score_ct(CTVolume(scan.hu, scan.affine, "x"),
                    load_models(tiny_checkpoints["cmm"], tiny_checkpoints["fgm"]), sampler="x0", seed=0)
    shown = [float(m.value) for m in at.metric[:2]]
    assert shown == pytest.approx([want.scores["cmm"], want.scores["fgm"]], rel=1e-3)


def test_on_demand_sampler_follows_the_store(db, tmp_path):
    s = dashboard.parse_settings(["--db", str(db)], environ={})
    assert s.sampler is None and s.cmm is None
    assert dashboard.samplers_for(dashboard.parse_settings(["--sampler", "ddim:5"], environ={})) == {
        "cmm": "ddim:5", "fgm": "ddim:5"}
    store = Store(tmp_path / "r.duckdb").init()
    assert dashboard.samplers_for(dashboard.parse_settings(["--db", str(store.path)], environ={})) is None
    store.ensure_run("cmm", "abc", "ddim:10", t0=400, seed=0)
    store.ensure_run("fgm", "def", "x0", t0=500, seed=0)
    got = dashboard.samplers_for(dashboard.parse_settings(["--db", str(store.path)], environ={}))
    assert got == {"cmm": "ddim:10", "fgm": "x0"}


def test_case_viewer_remakes_a_synthetic_input_saved_without_it(db, monkeypatch, tmp_path, tiny_checkpoints):
    """The demo ships maps without inputs: the viewer remakes the input from the scan's seed and
    matrix size, and shows it with both reconstructions and maps."""
    import pandas as pd

    from guad.inference import load_models, score_ct
    from guad.io import CTVolume
    from guad.maps import save_case
    from guad.synth import generate_scan

    new_db = tmp_path / "copy.duckdb"
    new_db.write_bytes(Path(db).read_bytes())
    store = Store(new_db)
    store.import_tables(pd.DataFrame([{"scan_id": "synthetic-ich", "site": "siteA", "split": "test",
                                       "label": "critical", "finding": "ich", "path": None, "lesion_ml": 5.0,
                                       "seed": 4, "synth_size": 96}]))
    scan = generate_scan(seed=4, finding="ich", size=96)
    assert dashboard.scan_ct(new_db, "synthetic-ich").hu.shape == scan.hu.shape  # remade at its size
    result = score_ct(CTVolume(scan.hu, scan.affine, "x"),
                      load_models(tiny_checkpoints["cmm"], tiny_checkpoints["fgm"]), sampler="x0")
    run = store.runs().iloc[0].run_id
    store.write_scores(run, [{"scan_id": "synthetic-ich", "score": 1.0}])
    save_case(new_db.parent / "maps", "synthetic-ich", result.maps, with_input=False)
    monkeypatch.setenv("GUAD_DB", str(new_db))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.session_state["scan"] = "synthetic-ich"
    at.switch_page(P["viewer"]).run()
    assert not at.exception, at.exception
    assert not at.error
    assert len(at.get("image")) == 5  # input (remade), two reconstructions, two maps
