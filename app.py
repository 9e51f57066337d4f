"""Streamlit entry point: `streamlit run app.py [-- --db FILE --data-root DIR --max-upload-mb N]`.

Store: --db or GUAD_DB (default: the built-in synthetic demo store). The pages are in app_pages/;
this file reads the store, draws the shared operating-point sidebar and runs the chosen page.
Everything that is not drawing lives in guad.dashboard.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import streamlit as st  # noqa: E402

from app_pages import _ui  # noqa: E402

st.set_page_config(page_title="guad: head-CT worklist reduction", layout="wide")

PAGES = [
    st.Page("app_pages/1_operating_point.py", title="Operating point", url_path="operating-point",
            default=True),
    st.Page("app_pages/2_score_explorer.py", title="Score explorer", url_path="score-explorer"),
    st.Page("app_pages/3_case_viewer.py", title="Case viewer", url_path="case-viewer"),
    st.Page("app_pages/4_missed_criticals.py", title="Missed criticals", url_path="missed-criticals"),
    st.Page("app_pages/5_score_a_scan.py", title="Score a scan", url_path="score-a-scan"),
]

settings = _ui.settings()
_ui.init_state()
frame, error = _ui.frame(settings)
message = _ui.dashboard.empty_state(settings, frame, error)
if message:
    # the Score-a-scan page still works without a store (it can create one)
    pg = st.navigation([PAGES[0], PAGES[4]])
    if pg.url_path != "score-a-scan":
        st.title("guad: head-CT worklist reduction")
        st.warning(message)
        st.stop()
    op = None
else:
    pg = st.navigation(PAGES)
    op = _ui.operating_point_sidebar(settings, frame)
st.sidebar.caption(f"Store: `{settings.db}`" + (" (synthetic demo)" if settings.is_demo else ""))
notice = _ui.demo_notice(settings)
if notice:
    st.sidebar.info(notice)
st.session_state["_ctx"] = _ui.Ctx(settings, frame, op, {p.url_path: p for p in PAGES})
pg.run()
_ui.mirror_to_url(pg.url_path)
