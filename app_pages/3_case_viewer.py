"""Case viewer: input, both reconstructions and the signed anomaly maps, slice by slice."""


import streamlit as st

from guad import dashboard
from app_pages import _ui

c = _ui.ctx()
op, df = c.op, c.frame
st.title("Case viewer")
ids = list(df["scan_id"])
if st.session_state.get("scan") not in ids:
    st.session_state["scan"] = ids[0]


def scan_changed():
    st.session_state["scan"] = st.session_state["w_scan"]
    st.session_state["slice"] = None


scan = st.selectbox("Scan", ids, key=_ui._bind("scan"), on_change=scan_changed)
row = df.set_index("scan_id").loc[scan]
m = st.columns([1, 1, 1, 3])
v = _ui.score_metrics(m, row["score_cmm"], row["score_fgm"], op)
m[2].metric("Class", row["label"], row["finding"] or "no finding", delta_color="off")
(m[3].success if v["excluded"] else m[3].info)(
    f"At {dashboard.op_label(op)}: {v['text']}. Site {row['site']}, split {row['split']}.")

root, name = dashboard.maps_location(c.db, scan, row.get("maps_path"))
from guad.maps import has_case  # noqa: E402

if not has_case(root, name):
    st.info(f"No saved images for {scan} yet (looked in {root / name}). They can be computed "
            "now with both models and kept for next time.")
    if st.button("Compute the images now", type="primary"):
        bar = st.progress(0.0, text="Starting…")
        try:
            from guad.inference import score_ct
            from guad.maps import save_case
            ct = dashboard.scan_ct(c.db, scan)
            from guad.commands.score import scan_seed  # the batch scorer's per-scan noise seed
            result = score_ct(ct, _ui.models(), sampler=_ui.samplers(), t0=_ui.t0s(), seed=scan_seed(0, scan),
                              progress=lambda f, t: bar.progress(min(max(float(f), 0.0), 1.0),
                                                                  text=t))
            save_case(root, name, result.maps)
            bar.progress(1.0, text=f"Done in {result.seconds:.0f} s")
            st.rerun()
        except ImportError as exc:
            st.error(f"Scoring is not available in this installation ({exc}).")
        except Exception as exc:  # missing weights, unreadable scan: say so, no traceback
            st.error(f"Could not compute the images: {dashboard.frame_error(exc)}")
else:
    _ui.slice_viewer(str(root), name, _ui.maps_version(root, name))
