"""Streamlit entry point: `streamlit run app.py [-- --db FILE]`.

Until the app pages land this page says what the project holds. It only calls guad and draws.
"""

import streamlit as st

from guad import __version__
from guad.paths import DEMO_DB

st.set_page_config(page_title="guad: head-CT worklist reduction", layout="wide")
st.title("guad: head-CT anomaly detection for worklist reduction")
st.caption(f"guad {__version__}")
st.info(
    "The operating-point, score-explorer, case-viewer and missed-criticals pages are not built yet. "
    "What is here now: the `guad` library and its CLI (`python -m guad --help`)."
)
st.write("Demo store:", str(DEMO_DB), "present" if DEMO_DB.exists() else "not built yet")
