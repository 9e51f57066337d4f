"""Operating point: rule + NPV target or manual cut-offs (sidebar); live metrics per site."""

import plotly.graph_objects as go
import streamlit as st

from guad import dashboard, report
from guad.store import Store
from app_pages import _ui

c = _ui.ctx()
op, df, split = c.op, c.frame, c.split
st.title("Operating point")
st.caption(f"{dashboard.op_label(op)}: a scan leaves the worklist when CMM ≤ {report.fmt_cutoff(op.c_cmm)} "
           f"and FGM ≤ {report.fmt_cutoff(op.c_fgm)}. Rules are fitted on the validation "
           f"split; the numbers below are on the **{split}** split. Every rate is k/n "
           "with its 95% Wilson interval.")

unreachable = dashboard.unreachable_note(op)
if unreachable:
    st.warning(unreachable)
ev = dashboard.site_metrics(df, op, split)
sites = list(ev["site"])
site = st.session_state.get("site") if st.session_state.get("site") in sites else "all"
st.session_state["site"] = site
pick = st.segmented_control("Site", sites, key=_ui._bind("site"), on_change=_ui._copy("site"))
row = ev[ev["site"] == (pick or "all")].iloc[0]
cols = st.columns(4)
for col, (key, label) in zip(cols, dashboard.SHOWN_RATES):
    k, n = int(row[f"{key}_k"]), int(row[f"{key}_n"])
    col.metric(f"{label} ({pick or 'all'})", report.fmt_pct(row[key]) if n else "n/a",
               help=f"{label}: {k}/{n}")
    col.caption(report.fmt_rate(k, n, row[f"{key}_lo"], row[f"{key}_hi"]))

st.subheader("Per test site")
st.dataframe(dashboard.metric_table(ev), hide_index=True, width="stretch", key="per_site")

left, right = st.columns([3, 2])
with left:
    st.subheader("NPV versus WLR")
    cv = _ui.curves(c.db, dashboard.db_version(c.db), split)
    fig = go.Figure()
    for name, colour in (("ensemble", "#222"), ("cmm", "#4c78a8"), ("fgm", "#f58518")):
        d = cv[name]
        if len(d) > 600:  # enough points to draw the curve
            d = d.iloc[::max(len(d) // 600, 1)]
        fig.add_scatter(x=d["wlr"], y=d["npv"], mode="lines",
                        name="ensemble (best pairs)" if name == "ensemble" else f"{name.upper()} alone",
                        line=dict(color=colour, width=2 if name == "ensemble" else 1))
    allrow = ev[ev["site"] == "all"].iloc[0]
    fig.add_scatter(x=[allrow["wlr"]], y=[allrow["npv"]], mode="markers", name="current point",
                    marker=dict(size=14, color="#d62728", symbol="x"))
    fig.update_layout(xaxis_title="WLR (excluded unremarkable / all scans)",
                      yaxis_title="NPV", height=380, margin=dict(l=10, r=10, t=10, b=10),
                      legend=dict(orientation="h"))
    st.plotly_chart(fig, key="curve")
with right:
    st.subheader("Each model alone and the ensemble")
    cmp = dashboard.model_comparison(df, op, split)
    st.dataframe(cmp[["model", "cut-off"] + [l for _, l in dashboard.SHOWN_RATES]],
                 hide_index=True, width="stretch", key="models")

t1, t2 = dashboard.paper_tables(df, op, split)
st.subheader("Table 1: NPV and WLR per site")
st.dataframe(t1, width="stretch", key="table1")
st.subheader("Table 2: NPV of FGM, CMM and the ensemble")
st.dataframe(t2, width="stretch", key="table2")

st.subheader("Save and export")
with st.form("save_op"):
    a, b, cc = st.columns([2, 2, 3])
    name = a.text_input("Name", value=dashboard.op_label(op))
    author = b.text_input("Your name")
    note = cc.text_input("Note")
    if st.form_submit_button("Save operating point to the store"):
        try:
            op_id = Store(c.db).save_operating_point(name or dashboard.op_label(op), op.rule, op.c_cmm,
                                                     op.c_fgm, None if op.rule == "manual"
                                                     else op.target, author or None,
                                                     note or None)
            st.success(f"Saved operating point #{op_id} '{name or dashboard.op_label(op)}'.")
        except Exception as exc:
            st.error(dashboard.frame_error(exc))
e1, e2 = st.columns(2)
e1.download_button("Export JSON (deployment)", dashboard.operating_point_json(op, ev, db=c.db),
                   file_name="operating_point.json", mime="application/json")
e2.download_button("Export CSV report", dashboard.operating_point_csv(ev),
                   file_name="operating_point_report.csv", mime="text/csv")
saved = None
try:
    saved = Store(c.db).operating_points()
except Exception:
    pass
if saved is not None and len(saved):
    with st.expander(f"Saved operating points ({len(saved)})"):
        st.dataframe(saved, hide_index=True)
