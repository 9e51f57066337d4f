"""Score explorer: log CMM vs log FGM by class, both cut-offs, excluded quadrant shaded."""

import numpy as np
import plotly.express as px
import streamlit as st

from guad import dashboard, report
from app_pages import _ui

c = _ui.ctx()
op, df = c.op, c.frame
st.title("Score explorer")
f1, f2, f3 = st.columns(3)
sites = f1.multiselect("Sites", sorted(df["site"].unique()), key="x_sites")
splits = f2.multiselect("Splits", sorted(df["split"].unique()), default=["test"], key="x_splits")
findings = f3.multiselect("Findings", dashboard.finding_options(df), key="x_findings")
view = dashboard.filter_frame(df, sites, splits, findings)
view = view[np.isfinite(view["score_cmm"]) & np.isfinite(view["score_fgm"])]
st.caption(f"{len(view)} scans shown; a point at or below both cut-offs (shaded) is excluded. "
           "Select a point (click, or box/lasso) to open that scan in the case viewer.")

plot = view.assign(finding=view["finding"].replace("", "none"))
fig = px.scatter(plot, x="score_cmm", y="score_fgm", color="label", log_x=True, log_y=True,
                 category_orders={"label": list(dashboard.CLASSES)},
                 color_discrete_map=dashboard.CLASS_COLOURS,
                 custom_data=["scan_id", "site", "finding"], render_mode="webgl",
                 labels={"score_cmm": "CMM score (log)", "score_fgm": "FGM score (log)"})
fig.update_traces(marker=dict(size=6, opacity=0.7),
                  hovertemplate="scan %{customdata[0]}<br>site %{customdata[1]}<br>"
                                "finding %{customdata[2]}<br>CMM %{x:.4g}<br>FGM %{y:.4g}"
                                "<extra></extra>")
pos = plot[["score_cmm", "score_fgm"]].to_numpy()
pos = pos[(pos > 0).all(axis=1)]
if len(pos):
    lo = pos.min(axis=0) / 1.5
    for c_, axis in ((op.c_cmm, "x"), (op.c_fgm, "y")):
        if np.isfinite(c_) and c_ > 0:
            (fig.add_vline if axis == "x" else fig.add_hline)(
                c_, line=dict(color="#d62728", dash="dash"))
    if np.isfinite(op.c_cmm) and np.isfinite(op.c_fgm) and op.c_cmm > 0 and op.c_fgm > 0:
        fig.add_shape(type="rect", x0=lo[0], x1=op.c_cmm, y0=lo[1], y1=op.c_fgm,
                      fillcolor="rgba(44,160,44,0.12)", line=dict(width=0), layer="below")
fig.update_layout(height=520, margin=dict(l=10, r=10, t=10, b=10), dragmode="select")
event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"),
                        key="scatter")
chosen = dashboard.scan_from_selection(event)
if chosen:
    _ui.open_in_viewer(chosen)

st.caption(f"Cut-offs: CMM {report.fmt_cutoff(op.c_cmm)}, FGM {report.fmt_cutoff(op.c_fgm)} "
           f"({dashboard.op_label(op)}).")
b1, b2 = st.columns(2)
for col, model in ((b1, "cmm"), (b2, "fgm")):
    box = px.box(plot, x="label", y=f"score_{model}", color="label", log_y=True,
                 category_orders={"label": list(dashboard.CLASSES)},
                 color_discrete_map=dashboard.CLASS_COLOURS, points=False,
                 labels={f"score_{model}": f"{model.upper()} score (log)", "label": "class"})
    cut = op.c_cmm if model == "cmm" else op.c_fgm
    if np.isfinite(cut) and cut > 0:
        box.add_hline(cut, line=dict(color="#d62728", dash="dash"))
    box.update_layout(height=340, showlegend=False, margin=dict(l=10, r=10, t=30, b=10),
                      title=f"{model.upper()} score by class")
    col.plotly_chart(box, key=f"box_{model}")
st.dataframe(dashboard.class_summary(view), key="summary")
