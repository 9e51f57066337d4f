"""The DuckDB store (one schema file, short-lived connections; see store.py's docstring)."""

from guad.store.store import (LABELS, MODELS, SCHEMA, SPLITS, VERDICTS, Store, StoreBusyError,
                              read_manifest, read_scores, run_key)

__all__ = ["LABELS", "MODELS", "SCHEMA", "SPLITS", "VERDICTS", "Store", "StoreBusyError",
           "read_manifest", "read_scores", "run_key"]
