"""Score a scan: upload a NIfTI / zipped DICOM series or pick one under the data root; score
it with both models, see it against the current cut-offs and in the viewer; add it to the
store."""

import streamlit as st

from guad import dashboard
from guad.errors import InputError
from app_pages import _ui

c = _ui.ctx()
s = c.settings
st.title("Score a scan")
st.caption(f"NIfTI (.nii, .nii.gz) or a .zip of one DICOM series, up to {s.max_upload_mb} MB; "
           "or a file under the data root "
           f"({s.data_root if s.data_root else 'not configured: --data-root or GUAD_DATA_ROOT'}).")

src = st.radio("Source", ("Upload", "Pick under the data root"), horizontal=True, key="src")
ct, token = None, None
try:
    if src == "Upload":
        up = st.file_uploader("Scan file", type=["nii", "gz", "zip"], key="upload")
        if up is not None:
            dashboard.check_upload_size(up.size, s.max_upload_bytes, up.name)
            token = f"upload:{up.name}:{up.size}:{up.file_id}"
            if st.session_state.get("_ct_token") != token:
                path = dashboard.save_upload(up.name, up.getvalue(), dashboard.temp_folder())
                from guad.io import read_ct
                st.session_state["_ct"] = read_ct(path)
                st.session_state["_ct_token"] = token
                st.session_state.pop("_result", None)
            ct = st.session_state["_ct"]
    else:
        options = dashboard.list_under_root(s.data_root)
        typed = st.text_input("Path under the data root (or pick below)", key="typed")
        picked = st.selectbox("Scans found", [""] + options, key="picked")
        choice = typed.strip() or picked
        if choice:
            path = dashboard.path_under_root(choice, s.data_root)
            token = f"path:{path}"
            if st.session_state.get("_ct_token") != token:
                from guad.io import read_ct
                st.session_state["_ct"] = read_ct(path)
                st.session_state["_ct_token"] = token
                st.session_state.pop("_result", None)
            ct = st.session_state["_ct"]
except InputError as exc:
    st.error(str(exc))
    st.session_state.pop("_ct_token", None)
    ct = None

if ct is not None:
    name = str(ct.path)
    st.success(f"Read {name}: {ct.hu.shape[0]}×{ct.hu.shape[1]}×{ct.hu.shape[2]} voxels, "
               f"{' × '.join(f'{x:.2g}' for x in ct.spacing)} mm.")
    if st.button("Score now with both models", type="primary"):
        bar = st.progress(0.0, text="Loading the models…")
        try:
            from guad.inference import score_ct
            result = score_ct(ct, _ui.models(), sampler=_ui.samplers(), t0=_ui.t0s(), seed=0,
                              progress=lambda f, t: bar.progress(min(max(float(f), 0.0), 1.0),
                                                                  text=t))
            bar.progress(1.0, text=f"Scored in {result.seconds:.1f} s")
            st.session_state["_result"] = result
        except ImportError as exc:
            st.error(f"Scoring is not available in this installation ({exc}).")
        except Exception as exc:  # missing weights, a scan the models refuse
            st.error(f"Could not score the scan: {dashboard.frame_error(exc)}")

result = st.session_state.get("_result") if ct is not None else None
if result is not None:
    sc = result.scores
    op = c.op
    if op is not None:
        m = st.columns([1, 1, 3])
        v = _ui.score_metrics(m, sc["cmm"], sc["fgm"], op)
        (m[2].success if v["excluded"] else m[2].warning)(f"At {dashboard.op_label(op)}: {v['text']}.")
    else:
        st.write(f"CMM {_ui.fmt_score(sc['cmm'])}, FGM {_ui.fmt_score(sc['fgm'])} "
                 "(no store with cut-offs yet).")
    _ui.slice_viewer(maps=result.maps)
    with st.form("add"):
        st.write("Add this scan and its scores to the store (site 'uploads', split 'test').")
        label = st.selectbox("Label", ("normal", "benign", "critical"), key="add_label")
        finding = st.text_input("Finding (optional, e.g. ich)")
        if st.form_submit_button("Add to the store"):
            try:
                from guad.maps import save_case
                existing = [] if c.frame is None else list(c.frame["scan_id"])
                sid = dashboard.new_scan_id(str(ct.path), existing)
                root, folder = dashboard.maps_location(s.db, sid)
                saved = save_case(root, folder, result.maps)
                # an upload lives in a temp folder that goes away: keep no path for it
                path = None if token.startswith("upload:") else str(ct.path)
                dashboard.add_scored_scan(s.db, sid, label, path, sc, finding or None,
                                          str(saved))
                st.cache_data.clear()
                st.success(f"Added {sid} to {s.db}.")
            except Exception as exc:
                st.error(dashboard.frame_error(exc))
