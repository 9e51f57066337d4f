"""Streamlit glue shared by the pages: settings, the cached frame, the shared operating point
(sidebar), URL mirroring, cached volumes and rendered slices. Logic lives in guad.dashboard."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import streamlit as st

from guad import dashboard, report
from guad.cutoffs import OperatingPoint

VIEWER_PAGE = "app_pages/3_case_viewer.py"
DEFAULTS = {"rule": "paper", "target": "0.99", "c_cmm": None, "c_fgm": None, "site": "all",
            "split": "test", "scan": None, "slice": None, "plane": "axial"}


# ----------------------------------------------------------------------------- settings, data
def settings() -> dashboard.Settings:
    return dashboard.parse_settings(sys.argv[1:])


@st.cache_data(show_spinner=False, max_entries=4)
def _frame(db: str, version: float):
    return dashboard.load_frame(db)


def frame(s: dashboard.Settings):
    """(frame or None, error or None). Cached per (db, file mtime): a scoring job's new rows
    show up on the next rerun after it writes."""
    try:
        return _frame(str(s.db), dashboard.db_version(s.db)), None
    except Exception as exc:  # a locked / corrupt store is shown, not raised
        return None, dashboard.frame_error(exc)


@st.cache_data(show_spinner=False, max_entries=4)
def _demo_notice(s: dashboard.Settings, version: float):
    return dashboard.demo_notice(s)


def demo_notice(s: dashboard.Settings) -> str | None:
    """The demo's notice, read from the store once per store version, not on every rerun."""
    return _demo_notice(s, dashboard.db_version(s.db))


@st.cache_data(show_spinner=False, max_entries=64)
def _fit(db: str, version: float, rule: str, target: str):
    return dashboard.fit_operating_point(_frame(db, version), rule, target)


@st.cache_data(show_spinner=False, max_entries=16)
def curves(db: str, version: float, split: str):
    return dashboard.curve_data(_frame(db, version), split)


# ----------------------------------------------------------------------------- shared state
def init_state() -> None:
    """Once per session: defaults, then whatever a shared link carries."""
    if st.session_state.get("_init"):
        return
    for k, v in DEFAULTS.items():
        st.session_state.setdefault(k, v)
    st.session_state.update(dashboard.decode_params(st.query_params.to_dict()))
    st.session_state["_init"] = True


def mirror_to_url(page: str | None = None) -> None:
    """Write what a user would share into the URL (only when it changed)."""
    state = {k: st.session_state.get(k) for k in dashboard.PARAMS}
    state["page"] = page
    if state.get("rule") != "manual":
        state["c_cmm"] = state["c_fgm"] = None
    want = dashboard.encode_params(state)
    if want != st.query_params.to_dict():
        st.query_params.from_dict(want)


def _bind(key: str) -> str:
    """Widget key for canonical state `key`: seeded from it before the widget is drawn, so the
    value survives page switches (Streamlit drops the state of widgets not drawn)."""
    wkey = f"w_{key}"
    st.session_state[wkey] = st.session_state.get(key)
    return wkey


def _copy(key: str):
    def cb():
        st.session_state[key] = st.session_state[f"w_{key}"]
    return cb


def _slider_moved(model: str, other_value: float):
    def cb():
        st.session_state["rule"] = "manual"
        st.session_state[f"c_{model}"] = st.session_state[f"w_c_{model}"]
        other = "fgm" if model == "cmm" else "cmm"
        st.session_state[f"c_{other}"] = other_value
    return cb


def operating_point_sidebar(s: dashboard.Settings, df) -> OperatingPoint:
    """The shared operating point: rule + NPV target, or each cut-off by hand. Drawn in the
    sidebar of every page; returns the current OperatingPoint."""
    version = dashboard.db_version(s.db)
    sb = st.sidebar
    sb.header("Operating point")
    rule = sb.selectbox("Rule", dashboard.RULES, key=_bind("rule"), on_change=_copy("rule"),
                        help="paper: each model reaches the target alone; joint: best ensemble "
                             "WLR at the target; conservative: the Wilson lower bound reaches "
                             "it. Fitted on the validation split. manual: drag the cut-offs.")
    choices = list(dashboard.TARGET_CHOICES) + [dashboard.OTHER_TARGET]
    cur_t = st.session_state.get("target") or "0.99"
    inv = {v: k for k, v in dashboard.TARGET_CHOICES.items()}
    st.session_state["target_choice"] = inv.get(cur_t, dashboard.OTHER_TARGET)
    if "target_other" not in st.session_state:
        st.session_state["target_other"] = cur_t if cur_t not in inv else "99.5%"

    def target_changed():
        c = st.session_state["w_target_choice"]
        st.session_state["target_choice"] = c
        try:
            st.session_state["target"] = dashboard.target_text(
                c, st.session_state.get("w_target_other", st.session_state["target_other"]))
        except ValueError:
            pass

    def other_changed():
        st.session_state["target_other"] = st.session_state["w_target_other"]
        try:
            st.session_state["target"] = dashboard.target_text(
                dashboard.OTHER_TARGET, st.session_state["w_target_other"])
        except ValueError:
            st.session_state["_target_error"] = st.session_state["w_target_other"]

    if rule != "manual":
        choice = sb.selectbox("NPV target", choices, key=_bind("target_choice"),
                              on_change=target_changed)
        if choice == dashboard.OTHER_TARGET:
            sb.text_input("Any NPV target (e.g. 99.5%, >99.5%)", key=_bind("target_other"),
                          on_change=other_changed)
            bad = st.session_state.pop("_target_error", None)
            if bad is not None:
                sb.error(f"NPV target {bad!r}: expected e.g. 99.5% or >99.5%")
    if rule == "manual":
        c_cmm = st.session_state.get("c_cmm")
        c_fgm = st.session_state.get("c_fgm")
        if c_cmm is None or c_fgm is None:
            fitted = _fit(str(s.db), version, "paper", cur_t)
            c_cmm = fitted.c_cmm if c_cmm is None else c_cmm
            c_fgm = fitted.c_fgm if c_fgm is None else c_fgm
    else:
        try:
            fitted = _fit(str(s.db), version, rule, cur_t)
        except ValueError as exc:
            sb.error(str(exc))
            fitted = OperatingPoint(rule, cur_t, float("-inf"), float("-inf"))
        c_cmm, c_fgm = fitted.c_cmm, fitted.c_fgm
    b_cmm, b_fgm = dashboard.slider_bounds(df, "cmm"), dashboard.slider_bounds(df, "fgm")
    v_cmm, v_fgm = dashboard.clamp_cutoff(c_cmm, b_cmm), dashboard.clamp_cutoff(c_fgm, b_fgm)
    if rule == "manual":  # what the sliders show is what is evaluated
        c_cmm, c_fgm = v_cmm, v_fgm
        st.session_state["c_cmm"], st.session_state["c_fgm"] = v_cmm, v_fgm
    st.session_state["w_c_cmm"], st.session_state["w_c_fgm"] = v_cmm, v_fgm
    sb.slider("CMM cut-off", b_cmm[0], b_cmm[1], step=b_cmm[2], key="w_c_cmm",
              on_change=_slider_moved("cmm", v_fgm), format="%.4g",
              help="Dragging switches the rule to manual. The far left excludes nothing.")
    sb.slider("FGM cut-off", b_fgm[0], b_fgm[1], step=b_fgm[2], key="w_c_fgm",
              on_change=_slider_moved("fgm", v_cmm), format="%.4g")
    if rule == "manual":
        op = OperatingPoint("manual", "manual", float(c_cmm), float(c_fgm))
    else:
        op = OperatingPoint(rule, fitted.target, c_cmm, c_fgm)
    sb.caption(f"**{dashboard.op_label(op)}** — CMM ≤ {report.fmt_cutoff(op.c_cmm)} and "
               f"FGM ≤ {report.fmt_cutoff(op.c_fgm)} → excluded")
    sb.selectbox("Evaluate on split", ("test", "val", "all"), key=_bind("split"),
                 on_change=_copy("split"))
    return op


# ----------------------------------------------------------------------------- context
class Ctx:
    """What app.py prepares for the pages each run."""

    def __init__(self, settings, frame, op, page_of):
        self.settings, self.frame, self.op, self.page_of = settings, frame, op, page_of

    @property
    def db(self) -> str:
        return str(self.settings.db)

    @property
    def split(self) -> str:
        return st.session_state.get("split") or "test"


def ctx() -> Ctx:
    return st.session_state["_ctx"]


def open_in_viewer(scan_id: str) -> None:
    st.session_state["scan"] = scan_id
    st.session_state["slice"] = None
    st.switch_page(VIEWER_PAGE)


# ----------------------------------------------------------------------------- volumes, slices
def maps_version(root: Path, name: str) -> float:
    p = Path(root) / name / "fgm_map.nii.gz"
    return p.stat().st_mtime if p.exists() else 0.0


@st.cache_resource(show_spinner=False, max_entries=8)
def load_maps(root: str, name: str, version: float):
    """Saved maps; a case saved without its input (the demo) gets it remade from the scan's
    file or, for a synthetic scan, from its seed (guad.dashboard.remake_input)."""
    from guad.maps import has_input, load_case
    if has_input(root, name):
        return load_case(root, name)
    with st.spinner(f"Remaking the input of {name} from its file or seed…"):
        hu, affine = dashboard.remake_input(settings().db, name)
    return load_case(root, name, hu, affine)


@st.cache_data(show_spinner=False, max_entries=512)
def rendered(root: str, name: str, version: float, plane: str, index: int, width: float,
             level: float, opacity: float, overlay: bool):
    """Rendered panes of one slice, keyed by scan / plane / slice / window / overlay."""
    from guad.viewer import Window
    return dashboard.render_panes(load_maps(root, name, version), plane, index,
                                  Window(width, level), opacity, overlay)


@st.cache_resource(show_spinner="Loading the models…")
def _models(cmm: str | None, fgm: str | None):
    from guad.inference import load_models
    return load_models(cmm=cmm, fgm=fgm, device=None)


def models():
    """Both models for on-demand scoring: --cmm/--fgm (GUAD_CMM/GUAD_FGM) or the shipped weights."""
    s = settings()
    return _models(str(s.cmm) if s.cmm else None, str(s.fgm) if s.fgm else None)


def t0s():
    """Per-model t0 for on-demand scoring: the store's latest runs' (guad.dashboard.t0s_for)."""
    return dashboard.t0s_for(settings())


def samplers():
    """Per-model sampler for on-demand scoring (see guad.dashboard.samplers_for)."""
    return dashboard.samplers_for(settings())


def score_metrics(cols, score_cmm: float, score_fgm: float, op) -> dict:
    """Both scores as metrics in cols[0], cols[1], each against its cut-off; returns the verdict."""
    from guad import report
    v = dashboard.score_verdict(score_cmm, score_fgm, op)
    for col, name, score, cut, below in ((cols[0], "CMM", score_cmm, op.c_cmm, v["cmm_below"]),
                                        (cols[1], "FGM", score_fgm, op.c_fgm, v["fgm_below"])):
        col.metric(f"{name} score", fmt_score(score),
                   f"{'≤' if below else '>'} cut-off {report.fmt_cutoff(cut)}", delta_color="off")
    return v


def fmt_score(x: float) -> str:
    return "missing" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.5g}"


# ----------------------------------------------------------------------------- the slice viewer
def _set_preset():
    name = st.session_state["w_preset"]
    st.session_state["preset"] = name
    if name in WINDOW_NAMES:
        from guad.viewer import WINDOW_PRESETS
        st.session_state["win_w"], st.session_state["win_l"] = WINDOW_PRESETS[name]


def _set_wl():
    st.session_state["win_w"] = st.session_state["w_win_w"]
    st.session_state["win_l"] = st.session_state["w_win_l"]
    st.session_state["preset"] = "custom"


WINDOW_NAMES = ("brain", "subdural", "stroke", "bone")


@st.fragment
def slice_viewer(root: str | None = None, name: str | None = None, version: float = 0.0,
                 maps=None) -> None:
    """Every pane at one shared slice, plane and window. A fragment: moving the slice reruns
    only this. Either saved maps (root, name, version; rendered slices cached) or in-memory
    `maps` (a scan scored just now)."""
    from guad import viewer
    cached = maps is None
    if cached:
        maps = load_maps(root, name, version)
    st.session_state.setdefault("plane", "axial")
    st.session_state.setdefault("preset", "brain")
    st.session_state.setdefault("win_w", 80.0)
    st.session_state.setdefault("win_l", 40.0)
    st.session_state.setdefault("opacity", 0.5)
    st.session_state.setdefault("overlay", True)
    c = st.columns([2, 2, 1, 1, 2, 1])
    plane = c[0].radio("Plane", viewer.PLANES, key=_bind("plane"), on_change=_copy("plane"),
                       horizontal=True)
    c[1].selectbox("Window", WINDOW_NAMES + ("custom",), key=_bind("preset"),
                   on_change=_set_preset,
                   help="brain 80/40, subdural 200/75, stroke 40/40, bone 2500/480 (W/L, HU)")
    st.session_state["w_win_w"] = float(st.session_state["win_w"])
    st.session_state["w_win_l"] = float(st.session_state["win_l"])
    c[2].number_input("W", min_value=1.0, max_value=5000.0, key="w_win_w", on_change=_set_wl)
    c[3].number_input("L", min_value=-1500.0, max_value=3000.0, key="w_win_l", on_change=_set_wl)
    c[4].slider("Map opacity", 0.0, 1.0, step=0.05, key=_bind("opacity"),
                on_change=_copy("opacity"))
    c[5].toggle("Maps", key=_bind("overlay"), on_change=_copy("overlay"))
    n = viewer.n_slices(maps.input_hu.shape, plane)
    cur = st.session_state.get("slice")
    if cur is None or not 0 <= int(cur) < n:
        cur = dashboard.strongest_slice(maps, plane)  # the middle slice when there is no map
        st.session_state["slice"] = int(cur)

    def jump():
        st.session_state["slice"] = dashboard.strongest_slice(maps, st.session_state["plane"])

    cs = st.columns([6, 2])
    cs[1].button("Jump to the largest anomaly", on_click=jump, disabled=not maps.signed)
    idx = cs[0].slider("Slice", 0, max(n - 1, 1), key=_bind("slice"), on_change=_copy("slice"))
    idx = min(int(idx), n - 1)
    w, l = float(st.session_state["win_w"]), float(st.session_state["win_l"])
    op, ov = float(st.session_state["opacity"]), bool(st.session_state["overlay"])
    if cached:
        panes = rendered(root, name, version, plane, idx, w, l, op, ov)
    else:
        panes = dashboard.render_panes(maps, plane, idx, viewer.Window(w, l), op, ov)
    titles = dict(dashboard.PANES)
    names = [k for k, _ in dashboard.PANES if k in panes]
    for row in (names[:3], names[3:]):
        if not row:
            continue
        cols = st.columns(3)
        for col, k in zip(cols, row):
            col.image(panes[k], caption=f"{titles[k]} · {plane} {idx + 1}/{n}",
                      width="stretch")
    st.caption("Radiological convention: the patient's left is on the image's right (letters "
               "on each pane). Maps: red = hyperdense, blue = hypodense against the "
               f"reconstruction. Voxel size {', '.join(f'{s:.2g}' for s in maps.spacing)} mm.")
    if cached:  # a fragment rerun does not reach app.py's URL mirroring
        qp = {"slice": str(idx), "plane": plane}
        for k, v in qp.items():
            if st.query_params.get(k) != v:
                st.query_params[k] = v
