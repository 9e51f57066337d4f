"""The one place that knows where the project's files live."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
# Shipped with the repo (small, made by the project's own commands; see README).
WEIGHTS_DIR = DATA / "weights"
DEMO_DIR = DATA / "demo"
DEMO_DB = DEMO_DIR / "demo.duckdb"
# Generated, git-ignored.
COHORTS_DIR = DATA / "cohorts"
CACHE_DIR = Path(os.environ.get("GUAD_CACHE", DATA / "cache"))
