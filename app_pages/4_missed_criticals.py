"""Missed criticals: every critical scan the current operating point would exclude."""

import streamlit as st

from guad import dashboard, report
from guad.store import Store
from guad.store.store import VERDICTS
from app_pages import _ui

VERDICT_LABELS = {"true_miss": "true miss", "label_error": "label error",
                  "not_critical": "not critical", "other": "other"}

c = _ui.ctx()
op, df, split = c.op, c.frame, c.split
st.title("Missed criticals")
try:
    reviews = Store(c.db).reviews()
except Exception as exc:
    st.warning(f"Reviews could not be read: {dashboard.frame_error(exc)}")
    reviews = None
missed = dashboard.missed_criticals(df, op, split, reviews)
n_crit = int((dashboard.split_rows(df, split)["label"] == "critical").sum())
st.caption(f"At {dashboard.op_label(op)} (CMM ≤ {report.fmt_cutoff(op.c_cmm)}, FGM ≤ "
           f"{report.fmt_cutoff(op.c_fgm)}), on the {split} split: **{len(missed)} of {n_crit} "
           "critical scans would be excluded**. Select a row to review it or open it.")
if missed.empty:
    st.success("No critical scan is excluded at this operating point.")
else:
    s1, s2 = st.columns([1, 3])
    s1.dataframe(dashboard.missed_summary(missed), hide_index=True, key="summary")
    shown = missed.assign(verdict=missed["verdict"].map(VERDICT_LABELS))
    event = s2.dataframe(shown, hide_index=True, on_select="rerun",
                         selection_mode="single-row", key="missed")
    picked = dashboard.scan_from_rows(event, missed)
    ids = list(missed["scan_id"])
    if picked:
        st.session_state["review_scan"] = picked
    if st.session_state.get("review_scan") not in ids:
        st.session_state["review_scan"] = ids[0]
    st.subheader("Review")
    a, b = st.columns([3, 1])
    scan = a.selectbox("Scan", ids, key=_ui._bind("review_scan"),
                       on_change=_ui._copy("review_scan"))
    if b.button("Open in the case viewer"):
        _ui.open_in_viewer(scan)
    with st.form("review"):
        verdict = st.radio("Verdict", VERDICTS, format_func=VERDICT_LABELS.get, horizontal=True)
        comment = st.text_area("Comment")
        reviewer = st.text_input("Reviewer")
        if st.form_submit_button("Record verdict"):
            if not reviewer.strip():
                st.error("Please give the reviewer's name.")
            else:
                try:
                    Store(c.db).add_review(scan, verdict, comment or None, reviewer.strip())
                    st.session_state["_review_msg"] = (f"Recorded '{VERDICT_LABELS[verdict]}' "
                                                       f"for {scan} by {reviewer.strip()}.")
                    st.rerun()
                except Exception as exc:
                    st.error(dashboard.frame_error(exc))
msg = st.session_state.pop("_review_msg", None)
if msg:
    st.success(msg)
st.download_button("Export the list with verdicts (CSV)", dashboard.missed_csv(missed, op),
                   file_name="missed_criticals.csv", mime="text/csv")
