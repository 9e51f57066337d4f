"""Everything the Streamlit app computes, as plain functions: no Streamlit here.

The pages (`app.py`, `app_pages/*.py`) only call these (and guad.metrics / cutoffs / report /
viewer) and draw. Each function is pure or does one small, named piece of I/O, so it is
unit-tested without a browser (tests/test_dashboard.py).

Groups: settings (which store, data root, upload limit), the store's frame, operating points
(rule + target or manual cut-offs), metric tables and curves, the score explorer, the case
viewer's volumes and panes, missed criticals and reviews, exports, URL parameters, uploads.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from guad import cutoffs, metrics, report, viewer
from guad.errors import GuadError, InputError
from guad.paths import DEMO_DB

# ----------------------------------------------------------------------------- settings
DEFAULT_MAX_UPLOAD_MB = 512
UPLOAD_SITE = "uploads"


@dataclass(frozen=True)
class Settings:
    db: Path                    # the DuckDB store the app reads
    data_root: Path | None      # scans may be picked only under this folder
    max_upload_mb: int          # uploads larger than this are refused
    is_demo: bool               # db is the built-in demo store
    cmm: Path | None = None     # checkpoints for on-demand scoring (None: the shipped weights)
    fgm: Path | None = None
    sampler: str | None = None  # None: the sampler of the store's latest run of each model

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb) * 1024 * 1024


def parse_settings(argv: list[str] | None = None, environ: dict | None = None) -> Settings:
    """Flags (`streamlit run app.py -- --db F --data-root D --max-upload-mb N`) win over the
    environment (GUAD_DB, GUAD_DATA_ROOT, GUAD_MAX_UPLOAD_MB); default: the demo store.
    Unknown arguments are ignored (under a test runner argv is the runner's)."""
    environ = os.environ if environ is None else environ
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--db")
    p.add_argument("--data-root")
    p.add_argument("--max-upload-mb", type=int)
    p.add_argument("--cmm")
    p.add_argument("--fgm")
    p.add_argument("--sampler")
    args, _ = p.parse_known_args(argv or [])
    cmm = args.cmm or environ.get("GUAD_CMM")
    fgm = args.fgm or environ.get("GUAD_FGM")
    db = args.db or environ.get("GUAD_DB") or str(DEMO_DB)
    root = args.data_root or environ.get("GUAD_DATA_ROOT")
    mb = args.max_upload_mb or int(environ.get("GUAD_MAX_UPLOAD_MB") or DEFAULT_MAX_UPLOAD_MB)
    dbp = Path(db).expanduser().resolve()
    return Settings(db=dbp, data_root=Path(root).expanduser().resolve() if root else None,
                    max_upload_mb=mb, is_demo=dbp == Path(DEMO_DB).resolve(),
                    cmm=Path(cmm).expanduser().resolve() if cmm else None,
                    fgm=Path(fgm).expanduser().resolve() if fgm else None,
                    sampler=args.sampler or environ.get("GUAD_SAMPLER") or None)


def _latest_runs(settings: Settings) -> pd.DataFrame | None:
    try:
        from guad.store import Store

        runs = Store(settings.db, read_timeout=5).runs() if Path(settings.db).exists() else None
    except Exception:  # noqa: BLE001 - no store, or busy: callers fall back to the defaults
        return None
    if runs is None or runs.empty:
        return None
    return runs[runs["sampler"] != "import"].sort_values("started")


def t0s_for(settings: Settings) -> dict[str, int] | None:
    """The noise level on-demand scoring starts from per model: the store's latest run's."""
    runs = _latest_runs(settings)
    if runs is None:
        return None
    out = {m: int(g["t0"].iloc[-1]) for m, g in runs.groupby("model") if pd.notna(g["t0"].iloc[-1])}
    return out or None


def samplers_for(settings: Settings) -> dict[str, str] | None:
    """The sampler on-demand scoring uses per model: the one asked for, else the one that made
    the store's latest run of that model (so a recomputed map matches the stored score), else
    None (each model's paper sampler)."""
    if settings.sampler:
        return {"cmm": settings.sampler, "fgm": settings.sampler}
    runs = _latest_runs(settings)
    if runs is None:
        return None
    out = {m: str(g["sampler"].iloc[-1]) for m, g in runs.groupby("model")}
    return out or None


def db_version(path: str | os.PathLike) -> float:
    """A cache key that changes whenever the store is written (file mtime; 0 if absent)."""
    try:
        p = Path(path)
        wal = p.with_name(p.name + ".wal")
        return max(p.stat().st_mtime, wal.stat().st_mtime if wal.exists() else 0.0)
    except FileNotFoundError:
        return 0.0


def demo_notice(settings: Settings) -> str | None:
    """What the app says on every page while it shows the built-in demo: synthetic data, the
    models and samplers that scored it, and how to open one's own store."""
    if not settings.is_demo:
        return None
    runs = _latest_runs(settings)  # one read for both the samplers and the t0s
    used = "not scored yet"
    if runs is not None:
        last = runs.groupby("model").tail(1).sort_values("model")
        used = ", ".join(f"{r.model.upper()} {r.sampler}" + (f" from t0 = {int(r.t0)}" if pd.notna(r.t0) else "")
                         for r in last.itertuples()) or used
    return ("**Built-in demo: every scan is synthetic** (generated from the MNI152 template by "
            "`bash scripts/build_demo.sh`), not patient data. Scored by the shipped CPU models "
            f"(data/weights/) with the sampler {used}. Your own store: "
            "`streamlit run app.py -- --db FILE` or `GUAD_DB=FILE streamlit run app.py`.")


def empty_state(settings: Settings, frame: pd.DataFrame | None, error: str | None = None) -> str | None:
    """The message the app shows instead of its pages when there is nothing to show, else None."""
    what = ("the built-in demo store (synthetic scans, made by `bash scripts/build_demo.sh`; "
            "not patient data)" if settings.is_demo else "the store you chose")
    how = ("Point the app at your own store with `streamlit run app.py -- --db FILE` or the "
           "environment variable `GUAD_DB=FILE`, or build one with "
           "`python -m guad import --db FILE --manifest scans.csv --scores scores.csv`.")
    if error:
        return f"Could not read {what} at `{settings.db}`: {error}\n\n{how}"
    if frame is None:
        return f"No store at `{settings.db}`: this is {what}, and it has not been built yet.\n\n{how}"
    if frame.empty:
        return f"The store at `{settings.db}` ({what}) holds no scans yet.\n\n{how}"
    if frame["score_cmm"].isna().all() and frame["score_fgm"].isna().all():
        return (f"The store at `{settings.db}` ({what}) holds {len(frame)} scans but no scores "
                f"yet: score them (`python -m guad score --db FILE`) or import scores.\n\n{how}")
    return None


def load_frame(db: str | os.PathLike) -> pd.DataFrame | None:
    """The store's scans+scores frame (`Store.frame`), plus maps_path; None if no file."""
    from guad.store import Store
    if not Path(db).exists():
        return None
    store = Store(db)
    frame = store.frame()
    maps = store.maps_paths()
    frame["maps_path"] = frame["scan_id"].map(maps)
    frame["finding"] = frame["finding"].fillna("")
    return frame


# ----------------------------------------------------------------------------- operating point
RULES = cutoffs.RULES + ("manual",)
TARGET_CHOICES = {"98%": "0.98", "99%": "0.99", ">99%": ">0.99"}  # label -> target text
OTHER_TARGET = "other"


def target_text(choice: str, other: str | float | None = None) -> str:
    """A target selector's choice ('98%', '99%', '>99%' or 'other' with a free value) ->
    the text `cutoffs.parse_target` reads. Raises ValueError on a bad free value."""
    if choice in TARGET_CHOICES:
        return TARGET_CHOICES[choice]
    if choice != OTHER_TARGET:
        raise ValueError(f"unknown NPV target choice {choice!r}")
    return cutoffs.parse_target(str(other)).label


def fit_operating_point(frame: pd.DataFrame, rule: str, target: str,
                        c_cmm: float | None = None, c_fgm: float | None = None,
                        max_candidates: int | None = 400) -> cutoffs.OperatingPoint:
    """rule 'paper'|'joint'|'conservative': fitted on the validation split for `target`;
    'manual': the given cut-offs as they are."""
    if rule == "manual":
        if c_cmm is None or c_fgm is None:
            raise ValueError("manual operating point needs both cut-offs")
        return cutoffs.OperatingPoint("manual", "manual", float(c_cmm), float(c_fgm))
    return cutoffs.choose(rule, frame, target, max_candidates=max_candidates)


def slider_bounds(frame: pd.DataFrame, model: str) -> tuple[float, float, float]:
    """(min, max, step) for a cut-off slider over a model's finite scores. The minimum sits a
    step below the lowest score, so the slider's bottom excludes nothing."""
    s = frame[f"score_{model}"].to_numpy(dtype=float, na_value=np.nan)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return 0.0, 1.0, 0.001
    lo, hi = float(s.min()), float(s.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    # 10,000 steps: anomaly scores are heavy-tailed (0 to thousands) while the cut-offs that
    # matter sit near the low end, so a coarser step would snap them visibly
    step = float(f"{span / 10000:.2g}")
    return _snap(lo - step, step, lo - step), _snap(hi + step, step, lo - step), step


def _snap(x: float, step: float, origin: float) -> float:
    return round(origin + round((x - origin) / step) * step, 12)


def clamp_cutoff(c: float, bounds: tuple[float, float, float]) -> float:
    """A cut-off (maybe -inf) as a slider value inside bounds, snapped to the step. The
    metrics shown are always computed from the slider's value, so they match what is shown."""
    lo, hi, step = bounds
    if not math.isfinite(c):
        return lo if c < 0 else hi
    return float(min(max(_snap(c, step, lo), lo), hi))


def split_rows(frame: pd.DataFrame, split: str | None) -> pd.DataFrame:
    return frame if split in (None, "all") else frame[frame["split"] == split]


def site_metrics(frame: pd.DataFrame, op: cutoffs.OperatingPoint, split: str | None = "test"
                 ) -> pd.DataFrame:
    """`cutoffs.evaluate` (one row per site, then 'all') of op on `split` (None/'all': every row)."""
    return cutoffs.evaluate(op, frame, None if split in (None, "all") else split)


def unreachable_note(op: cutoffs.OperatingPoint) -> str | None:
    """What the Operating point page says when a fitted rule excludes nothing (no cut-off
    reaches its NPV target on the validation split), else None."""
    if op.rule == "manual" or (op.c_cmm > -math.inf and op.c_fgm > -math.inf):
        return None
    return (f"With these models no cut-off reaches the {op.target} NPV target on the validation "
            f"split under the `{op.rule}` rule, so it excludes nothing: every scan stays on the "
            "worklist. Lower the target, try another rule, or set the cut-offs by hand (sidebar) "
            "to see what each exclusion would cost.")


SHOWN_RATES = (("npv", "NPV"), ("wlr", "WLR"), ("sensitivity", "Sensitivity"),
               ("excluded", "Excluded"))


def metric_table(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Display table: site, then NPV / WLR / Sensitivity / Excluded each as
    '98.1% (53/54) [90.2-99.7]'."""
    rows = []
    for _, r in evaluation.iterrows():
        row = {"site": r["site"], "scans": int(r["n"])}
        for key, name in SHOWN_RATES:
            row[name] = report.fmt_rate(int(r[f"{key}_k"]), int(r[f"{key}_n"]),
                                        r[f"{key}_lo"], r[f"{key}_hi"])
        rows.append(row)
    return pd.DataFrame(rows)


def model_comparison(frame: pd.DataFrame, op: cutoffs.OperatingPoint,
                     split: str | None = "test") -> pd.DataFrame:
    """Each model alone (score <= its cut-off) beside the AND ensemble, pooled over sites:
    rows CMM, FGM, Ensemble; columns model, cut-off, then each shown rate as text plus the
    raw rates dict columns (<rate>, <rate>_k, <rate>_n)."""
    crit, a, b = cutoffs.frame_arrays(split_rows(frame, split))
    rows = []
    for name, ex, cut in (("CMM", a <= op.c_cmm, report.fmt_cutoff(op.c_cmm)),
                          ("FGM", b <= op.c_fgm, report.fmt_cutoff(op.c_fgm)),
                          ("Ensemble", (a <= op.c_cmm) & (b <= op.c_fgm), "both")):
        r = metrics.rates(**metrics.confusion(crit, ex))
        row = {"model": name, "cut-off": cut}
        for key, label in SHOWN_RATES:
            row[label] = report.fmt_rate(int(r[f"{key}_k"]), int(r[f"{key}_n"]),
                                         float(r[f"{key}_lo"]), float(r[f"{key}_hi"]))
        for key, _ in SHOWN_RATES:
            row[f"{key}_k"], row[f"{key}_n"] = int(r[f"{key}_k"]), int(r[f"{key}_n"])
        rows.append(row)
    return pd.DataFrame(rows)


def paper_tables(frame: pd.DataFrame, op: cutoffs.OperatingPoint,
                 split: str | None = "test") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1 and Table 2 of the paper (wide layout) for the current operating point."""
    ev = site_metrics(frame, op, split)
    return report.wide_table1(report.table1(ev)), report.wide_table2(report.table2(ev))


def curve_data(frame: pd.DataFrame, split: str | None = "test", grid: int = 60) -> dict:
    """The NPV-versus-WLR curves on `split`: each model alone (every distinct cut-off) and the
    ensemble's upper frontier over a grid x grid sweep of cut-off pairs (quantiles of each
    score). Returns {'cmm': DataFrame(wlr, npv), 'fgm': ..., 'ensemble': ...}."""
    crit, a, b = cutoffs.frame_arrays(split_rows(frame, split))
    out = {}
    for name, s in (("cmm", a), ("fgm", b)):
        fin = np.isfinite(s)
        if not fin.any():
            out[name] = pd.DataFrame({"wlr": [], "npv": [], "cutoff": []})
            continue
        c = metrics.npv_wlr_curve(crit[fin], s[fin])
        # WLR over ALL scans of the split, not just the scored ones
        out[name] = pd.DataFrame({"wlr": c["tn"] / max(len(s), 1), "npv": c["npv"],
                                  "cutoff": c["cutoff"]})
    g1 = _quantile_grid(a, grid)
    g2 = _quantile_grid(b, grid)
    if g1.size and g2.size:
        sw = metrics.sweep(crit, a, b, g1, g2)
        wlr, npv = sw["wlr"].ravel(), sw["npv"].ravel()
        ok = np.isfinite(npv)
        df = pd.DataFrame({"wlr": wlr[ok], "npv": npv[ok]})
        # upper frontier: the best NPV at each WLR or more
        df = df.sort_values(["wlr", "npv"], ascending=[False, False])
        df["best"] = df["npv"].cummax()
        df = df[df["npv"] >= df["best"]].drop(columns="best").sort_values("wlr")
        out["ensemble"] = df.drop_duplicates("wlr", keep="last").reset_index(drop=True)
    else:
        out["ensemble"] = pd.DataFrame({"wlr": [], "npv": []})
    return out


def _quantile_grid(s: np.ndarray, grid: int) -> np.ndarray:
    s = s[np.isfinite(s)]
    if not s.size:
        return np.array([])
    return np.unique(np.quantile(s, np.linspace(0, 1, grid)))


# ----------------------------------------------------------------------------- score explorer
CLASSES = ("normal", "benign", "critical")
CLASS_COLOURS = {"normal": "#4c78a8", "benign": "#f2a541", "critical": "#d62728"}


def filter_frame(frame: pd.DataFrame, sites=None, splits=None, findings=None) -> pd.DataFrame:
    """Rows whose site / split / finding is in the given lists (None or empty: no filter).
    A normal scan's finding is '' and is selected by the finding 'none'."""
    out = frame
    if sites:
        out = out[out["site"].isin(sites)]
    if splits:
        out = out[out["split"].isin(splits)]
    if findings:
        f = out["finding"].fillna("").replace("", "none")
        out = out[f.isin(findings)]
    return out


def finding_options(frame: pd.DataFrame) -> list[str]:
    f = frame["finding"].fillna("").replace("", "none")
    return sorted(f.unique())


def scan_from_selection(selection) -> str | None:
    """A plotly/dataframe selection event (the dict st.plotly_chart / st.dataframe return)
    -> the selected scan_id, or None. Plotly points carry the scan_id as customdata[0];
    dataframe selections give row positions, resolved by `scan_from_rows`."""
    if selection is None:
        return None
    sel = selection.get("selection", selection) if isinstance(selection, dict) else \
        getattr(selection, "selection", None)
    if sel is None:
        return None
    points = sel.get("points") if isinstance(sel, dict) else getattr(sel, "points", None)
    for p in points or []:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if cd is None:
            continue
        return str(cd[0] if isinstance(cd, (list, tuple)) else cd)
    return None


def scan_from_rows(selection, table: pd.DataFrame) -> str | None:
    """A st.dataframe single-row selection -> the scan_id of that row in `table`."""
    if selection is None:
        return None
    sel = selection.get("selection", selection) if isinstance(selection, dict) else \
        getattr(selection, "selection", None)
    rows = (sel.get("rows") if isinstance(sel, dict) else getattr(sel, "rows", None)) or []
    if not rows or rows[0] >= len(table):
        return None
    return str(table.iloc[int(rows[0])]["scan_id"])


def class_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts per class and split (for the explorer's caption)."""
    return frame.groupby(["split", "label"]).size().unstack(fill_value=0)


# ----------------------------------------------------------------------------- missed criticals
def missed_criticals(frame: pd.DataFrame, op: cutoffs.OperatingPoint,
                     split: str | None = "test", reviews: pd.DataFrame | None = None
                     ) -> pd.DataFrame:
    """Every critical scan that `op` would exclude, ordered by site, finding, scan_id, with
    both scores and (when reviews are given) the latest verdict, comment, reviewer, time."""
    rows = split_rows(frame, split)
    crit, a, b = cutoffs.frame_arrays(rows)
    ex = (a <= op.c_cmm) & (b <= op.c_fgm)
    out = rows.loc[crit & ex, ["scan_id", "site", "split", "finding", "score_cmm",
                              "score_fgm"]].copy()
    out = out.sort_values(["site", "finding", "scan_id"]).reset_index(drop=True)
    for col in ("verdict", "comment", "reviewer", "reviewed_at"):
        out[col] = None
    if reviews is not None and len(reviews):
        last = reviews.sort_values(["created", "review_id"]).groupby("scan_id").tail(1)
        last = last.set_index("scan_id")
        for col, src in (("verdict", "verdict"), ("comment", "comment"),
                         ("reviewer", "reviewer"), ("reviewed_at", "created")):
            out[col] = out["scan_id"].map(last[src]).astype(object)
            out[col] = out[col].where(out[col].notna(), None)
    return out


def missed_summary(missed: pd.DataFrame) -> pd.DataFrame:
    """Missed criticals counted per site and finding."""
    if missed.empty:
        return pd.DataFrame(columns=["site", "finding", "missed"])
    return missed.groupby(["site", "finding"]).size().rename("missed").reset_index()


def missed_csv(missed: pd.DataFrame, op: cutoffs.OperatingPoint) -> str:
    out = missed.assign(rule=op.rule, target=op.target, c_cmm=op.c_cmm, c_fgm=op.c_fgm)
    return out.to_csv(index=False)


# ----------------------------------------------------------------------------- exports
def operating_point_json(op: cutoffs.OperatingPoint, evaluation: pd.DataFrame,
                         name: str | None = None, db: str | None = None) -> str:
    """What a deployment needs: the rule, the two cut-offs, the AND decision, and the test
    metrics it was chosen with (per site, counts and intervals). -inf is written as null
    with 'excludes_nothing': true for that model (JSON has no infinity)."""
    def cut(c):
        return None if not math.isfinite(c) else float(c)

    sites = {}
    for _, r in evaluation.iterrows():
        sites[r["site"]] = {key: {"k": int(r[f"{key}_k"]), "n": int(r[f"{key}_n"]),
                                  "value": _num(r[key]), "lo": _num(r[f"{key}_lo"]),
                                  "hi": _num(r[f"{key}_hi"])}
                            for key, _ in SHOWN_RATES}
    doc = {"name": name or op.name, "rule": op.rule, "target": op.target,
           "decision": "exclude when score_cmm <= cmm.cutoff AND score_fgm <= fgm.cutoff",
           "cmm": {"cutoff": cut(op.c_cmm), "excludes_nothing": op.c_cmm == -math.inf},
           "fgm": {"cutoff": cut(op.c_fgm), "excludes_nothing": op.c_fgm == -math.inf},
           "store": db, "metrics": sites}
    return json.dumps(doc, indent=2)


def _num(x):
    x = float(x)
    return None if math.isnan(x) else x


def operating_point_csv(evaluation: pd.DataFrame) -> str:
    """CSV report: Table 1 long form (NPV, WLR per site with counts and intervals) plus the
    sensitivity and excluded rows."""
    rows = []
    for _, r in evaluation.iterrows():
        for key, label in SHOWN_RATES:
            rows.append({"rule": r["rule"], "target": r["target"], "c_cmm": r["c_cmm"],
                         "c_fgm": r["c_fgm"], "site": r["site"], "metric": label,
                         "k": int(r[f"{key}_k"]), "n": int(r[f"{key}_n"]), "value": r[key],
                         "lo": r[f"{key}_lo"], "hi": r[f"{key}_hi"],
                         "text": report.fmt_rate(int(r[f"{key}_k"]), int(r[f"{key}_n"]),
                                                 r[f"{key}_lo"], r[f"{key}_hi"])})
    return pd.DataFrame(rows).to_csv(index=False)


# ----------------------------------------------------------------------------- URL state
PARAMS = ("page", "site", "rule", "target", "c_cmm", "c_fgm", "scan", "slice", "plane")


def encode_params(state: dict) -> dict[str, str]:
    """Session state -> query parameters (strings); None values and -inf cut-offs are left
    out or written as '-inf'."""
    out = {}
    for k in PARAMS:
        v = state.get(k)
        if v is None or v == "":
            continue
        if isinstance(v, float):
            out[k] = "-inf" if v == -math.inf else ("inf" if v == math.inf else repr(v))
        else:
            out[k] = str(v)
    return out


def decode_params(params: dict) -> dict:
    """Query parameters -> state, dropping anything malformed (a shared link never breaks
    the app). Keys as in PARAMS; cut-offs float, slice int."""
    out: dict = {}
    get = (lambda k: params.get(k))
    for k in ("page", "site", "scan"):
        v = get(k)
        if v:
            out[k] = str(v)
    rule = get("rule")
    if rule in RULES:
        out["rule"] = rule
    t = get("target")
    if t:
        try:
            cutoffs.parse_target(t)
            out["target"] = str(t)
        except ValueError:
            pass
    for k in ("c_cmm", "c_fgm"):
        v = get(k)
        try:
            if v is not None and not math.isnan(float(v)):
                out[k] = float(v)
        except ValueError:
            pass
    v = get("slice")
    if v is not None and str(v).lstrip("-").isdigit():
        out["slice"] = max(int(v), 0)
    if get("plane") in viewer.PLANES:
        out["plane"] = get("plane")
    return out


# ----------------------------------------------------------------------------- case viewer
PANES = (("input", "Input"), ("cmm_recon", "CMM reconstruction"),
         ("fgm_recon", "FGM reconstruction"), ("cmm_map", "CMM anomaly map"),
         ("fgm_map", "FGM anomaly map"))


def maps_location(db: str | os.PathLike, scan_id: str, maps_path: str | None = None
                  ) -> tuple[Path, str]:
    """(root, folder name) for guad.maps.load_case / has_case / save_case: the scores table's
    maps_path when set, else <db folder>/maps/<scan_id>."""
    if isinstance(maps_path, str) and maps_path:
        p = Path(maps_path)
        return p.parent, p.name
    return Path(db).resolve().parent / "maps", scan_id


def scan_ct(db: str | os.PathLike, scan_id: str):
    """The CTVolume of a stored scan: its file when it is there, else (a synthetic scan) remade
    from its seed, finding, site and matrix size. FileNotFoundError when neither works."""
    from guad.io import CTVolume, read_ct
    from guad.store import Store

    scans = Store(db).scans().set_index("scan_id")
    if scan_id not in scans.index:
        raise FileNotFoundError(f"{scan_id}: not in the store {db}")
    row = scans.loc[scan_id]
    path = row.get("path")
    if isinstance(path, str) and path and os.path.exists(path):
        return read_ct(path)
    seed = row.get("seed")
    if seed is None or pd.isna(seed):
        raise FileNotFoundError(f"{scan_id}: its file ({path}) is missing and it is not a "
                                "synthetic scan that can be remade from a seed")
    from guad.synth import remake_scan

    size = row.get("synth_size")
    synth = remake_scan({"scan_id": scan_id, "seed": int(seed), "site": row["site"],
                         "finding": row.get("finding") or None},
                        size=None if size is None or pd.isna(size) else int(size))
    return CTVolume(synth.hu, synth.affine, f"synthetic:{scan_id}")


def remake_input(db: str | os.PathLike, scan_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(input HU on the display grid, its affine) for a case saved without its input."""
    from guad.inference import display_input
    from guad.preprocess import preprocess_ct

    ct = scan_ct(db, scan_id)
    pp = preprocess_ct(ct)
    return display_input(ct, pp), pp.fgm_affine


def render_panes(maps, plane: str, index: int, window: viewer.Window,
                 opacity: float = 0.5, show_overlay: bool = True) -> dict[str, np.ndarray]:
    """Every pane of the case viewer at one slice: name -> RGB uint8, labelled with the
    orientation letters. Missing volumes (a model that was not run) are left out."""
    maps = maps.display()  # model grids -> the display grid (once per CaseMaps)
    sp = maps.spacing
    out = {"input": viewer.render_pane(maps.input_hu, plane, index, window, sp)}
    for m in ("cmm", "fgm"):
        if m in maps.recon:
            out[f"{m}_recon"] = viewer.render_pane(maps.recon[m], plane, index, window, sp)
    for m in ("cmm", "fgm"):
        if m in maps.signed:
            out[f"{m}_map"] = viewer.render_pane(maps.input_hu, plane, index, window, sp,
                                                 maps.signed[m] if show_overlay else None,
                                                 opacity)
    return {k: label_orientation(v, plane) for k, v in out.items()}


def label_orientation(rgb: np.ndarray, plane: str, min_size: int = 256) -> np.ndarray:
    """Upscale small panes (nearest) to at least min_size wide and write the orientation
    letters (R/L, A/P, S/I) at the edges, so the convention is on the image itself."""
    from PIL import Image, ImageDraw
    h, w = rgb.shape[:2]
    f = max(1, int(math.ceil(min_size / max(w, 1))))
    if f > 1:
        rgb = np.repeat(np.repeat(rgb, f, axis=0), f, axis=1)
    img = Image.fromarray(np.ascontiguousarray(rgb))
    d = ImageDraw.Draw(img)
    left, right, top, bottom = viewer.ORIENTATION_LABELS[plane]
    H, W = rgb.shape[:2]
    col = (255, 255, 0)
    d.text((3, H // 2 - 5), left, fill=col)
    d.text((W - 10, H // 2 - 5), right, fill=col)
    d.text((W // 2 - 3, 2), top, fill=col)
    d.text((W // 2 - 3, H - 13), bottom, fill=col)
    return np.asarray(img)


def strongest_slice(maps, plane: str) -> int:
    """The slice with the largest anomaly, summed over both models' signed maps."""
    maps = maps.display()
    total = None
    for s in maps.signed.values():
        total = np.abs(s) if total is None else total + np.abs(s)
    if total is None:
        total = np.zeros_like(maps.input_hu)
    return viewer.max_anomaly_slice(total, plane)


def score_verdict(score_cmm: float, score_fgm: float, op: cutoffs.OperatingPoint) -> dict:
    """Where a scan's two scores sit against the cut-offs: per model below/above, and whether
    the ensemble would exclude it."""
    below_c = bool(np.isfinite(score_cmm) and score_cmm <= op.c_cmm)
    below_f = bool(np.isfinite(score_fgm) and score_fgm <= op.c_fgm)
    return {"cmm_below": below_c, "fgm_below": below_f, "excluded": below_c and below_f,
            "text": ("excluded from the worklist (both scores at or below their cut-offs)"
                     if below_c and below_f else "kept on the worklist")}


# ----------------------------------------------------------------------------- scoring a scan
def check_upload_size(n_bytes: int, max_bytes: int, name: str = "upload") -> None:
    """Refuse an upload over the limit with a message (InputError)."""
    if n_bytes > max_bytes:
        raise InputError(name, f"file is {n_bytes / 2**20:.1f} MB; uploads are limited to "
                               f"{max_bytes / 2**20:.0f} MB (set --max-upload-mb or "
                               "GUAD_MAX_UPLOAD_MB, or pick the file under the data root)")


def path_under_root(path: str | os.PathLike, root: str | os.PathLike | None) -> Path:
    """Resolve `path` (relative paths are taken under root) and return it if it lies inside
    `root` and exists; otherwise InputError. Symlinks are resolved first, so a link out of the
    root is refused."""
    if root is None:
        raise InputError(str(path), "no data root is configured (--data-root or GUAD_DATA_ROOT)")
    r = Path(root).resolve()
    p = Path(path).expanduser()
    p = (p if p.is_absolute() else r / p).resolve()
    if p != r and r not in p.parents:
        raise InputError(str(path), f"is outside the data root {r}; only files under it are "
                                    "accepted")
    if not p.exists():
        raise InputError(str(path), "no such file or folder under the data root")
    return p


def list_under_root(root: str | os.PathLike | None, limit: int = 2000) -> list[str]:
    """Candidate scans under the data root (relative paths): NIfTI files and folders that
    hold .dcm files, sorted, at most `limit`."""
    if root is None or not Path(root).is_dir():
        return []
    r = Path(root).resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(r):
        dirnames.sort()
        if any(f.lower().endswith(".dcm") for f in filenames):
            found.append(os.path.relpath(dirpath, r))
        for f in sorted(filenames):
            if f.endswith((".nii", ".nii.gz")):
                found.append(os.path.relpath(os.path.join(dirpath, f), r))
        if len(found) >= limit:
            break
    return sorted(found)[:limit]


def save_upload(name: str, data: bytes, dest: str | os.PathLike) -> Path:
    """Write an uploaded file into folder `dest` and return what `guad.io.read_ct` should
    read: the NIfTI file, or the folder a .zip of a DICOM series was unpacked into. Raises
    InputError for an unknown type, a bad zip or an entry escaping the folder."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base = Path(name).name
    low = base.lower()
    if low.endswith((".nii", ".nii.gz")):
        p = dest / base
        p.write_bytes(data)
        return p
    if low.endswith(".zip"):
        return unzip_series(data, dest / "dicom", name)
    raise InputError(name, "not a NIfTI file (.nii, .nii.gz) or a .zip of a DICOM series")


def unzip_series(data: bytes, dest: str | os.PathLike, name: str = "upload.zip") -> Path:
    """Unpack a zipped DICOM series into `dest` safely (no absolute paths or '..'); returns
    the folder holding the most files (a zip often wraps the series in a folder)."""
    dest = Path(dest).resolve()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InputError(name, "not a readable zip file") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if not members:
            raise InputError(name, "the zip file is empty")
        for m in members:
            target = (dest / m.filename).resolve()
            if dest not in target.parents:
                raise InputError(name, f"zip entry {m.filename!r} points outside the folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    counts: dict[Path, int] = {}
    for p in dest.rglob("*"):
        if p.is_file() and "__MACOSX" not in p.parts:
            counts[p.parent] = counts.get(p.parent, 0) + 1
    return max(counts, key=counts.get) if counts else dest


def temp_folder(prefix: str = "guad-upload-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def new_scan_id(name: str, existing) -> str:
    """A scan id for an uploaded/picked scan: the file's stem, made unique."""
    stem = Path(name).name
    for suf in (".nii.gz", ".nii", ".zip"):
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem) or "scan"
    base, i, existing = f"upload-{stem}", 1, set(existing)
    sid = base
    while sid in existing:
        i += 1
        sid = f"{base}-{i}"
    return sid


def add_scored_scan(db: str | os.PathLike, scan_id: str, label: str, path: str | None,
                    scores: dict, finding: str | None = None,
                    maps_folder: str | None = None) -> None:
    """Insert a scored upload into the store: a scans row (site 'uploads', split 'test') and
    one score per model (an 'app-upload' run per model)."""
    from guad.store import Store
    from guad.store.store import LABELS
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}")
    store = Store(db).init()
    scans = pd.DataFrame([{"scan_id": scan_id, "site": UPLOAD_SITE, "split": "test",
                           "label": label, "finding": finding or None, "path": path,
                           "lesion_ml": np.nan, "seed": pd.NA}])
    scans["seed"] = scans["seed"].astype("Int64")
    store.import_tables(scans)
    for model in ("cmm", "fgm"):
        rid = store.ensure_run(model, "app-upload", "app", note="scored in the app")
        store.write_scores(rid, [{"scan_id": scan_id, "score": float(scores[model]),
                                  "maps_path": maps_folder}])


def frame_error(exc: Exception) -> str:
    """A user-facing line for an error reading the store."""
    if isinstance(exc, GuadError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- example data
def example_store(db: str | os.PathLike, n_scans: int = 300, seed: int = 0,
                  maps_for: int = 1, test_sites=("site_a", "site_b", "site_c")):
    """A store of RANDOM scores (not model output) for tests, benchmarks and screenshots:
    a validation split (site 'internal') and three test sites, classes ~60% normal, 25%
    benign, 15% critical, log-normal scores higher for critical scans, and small synthetic
    viewer maps for the first `maps_for` critical scans (saved under <db folder>/maps).
    Returns the Store."""
    from guad.maps import save_case
    from guad.store import Store
    rng = np.random.default_rng(seed)
    n_val = n_scans // 3
    site = np.r_[np.full(n_val, "internal", dtype=object),
                 np.array(test_sites, dtype=object)[rng.integers(0, len(test_sites),
                                                                 n_scans - n_val)]]
    split = np.r_[np.full(n_val, "val", dtype=object), np.full(n_scans - n_val, "test",
                                                               dtype=object)]
    label = rng.choice(np.array(CLASSES, dtype=object), n_scans, p=[0.6, 0.25, 0.15])
    crit_f, ben_f = ("ich", "sdh", "sah", "infarct", "mass"), ("lacune", "calcification", "atrophy")
    finding = np.where(label == "critical", rng.choice(crit_f, n_scans),
                       np.where(label == "benign", rng.choice(ben_f, n_scans), ""))
    shift = np.where(label == "critical", 1.2, np.where(label == "benign", 0.3, 0.0))
    s_cmm = np.exp(rng.normal(-2.5 + shift, 0.5))
    s_fgm = np.exp(rng.normal(-2.8 + 0.8 * shift, 0.6))
    ids = [f"s{i:05d}" for i in range(n_scans)]
    scans = pd.DataFrame({"scan_id": ids, "site": site, "split": split, "label": label,
                          "finding": [f or None for f in finding], "path": None,
                          "lesion_ml": np.nan, "seed": pd.array([pd.NA] * n_scans,
                                                                dtype="Int64")})
    scores = pd.concat([pd.DataFrame({"scan_id": ids, "model": m, "score": s})
                        for m, s in (("cmm", s_cmm), ("fgm", s_fgm))], ignore_index=True)
    scores["row"] = np.arange(len(scores)) + 2
    store = Store(db).init()
    store.import_tables(scans, scores, source="example")
    crit_ids = [i for i, l in zip(ids, label) if l == "critical"][:maps_for]
    for sid in crit_ids:
        save_case(Path(db).resolve().parent / "maps", sid, example_maps(seed))
    return store


def example_maps(seed: int = 0, shape=(48, 48, 12)) -> "object":
    """Small synthetic CaseMaps: an ellipse of 'brain' with a hyperdense blob on the patient's
    left in slice 2/3 of the stack; 1 x 1 x 5 mm voxels."""
    from guad.maps import CaseMaps
    X, Y, Z = shape
    x, y, z = np.meshgrid(np.linspace(-1, 1, X), np.linspace(-1, 1, Y), np.arange(Z),
                          indexing="ij")
    brain = (x ** 2 / 0.8 + y ** 2 / 0.95) < 1
    hu = np.where(brain, 35.0, -1000.0).astype(np.float32)
    hu[(x ** 2 / 0.9 + y ** 2 / 1.05 >= 1) & (x ** 2 / 0.8 + y ** 2 / 0.95 < 1.25)] = 1200.0
    blob = ((x - 0.4) ** 2 + y ** 2 < 0.04) & (np.abs(z - 2 * Z // 3) <= 1)
    hu[blob] = 60.0
    hu[blob & (z == 2 * Z // 3)] = 80.0  # brightest in the middle slice of the blob
    recon = np.where(brain, 35.0, 0.0).astype(np.float32)
    signed = np.where(blob, hu - 35.0, 0.0).astype(np.float32)
    hypo = ((x + 0.4) ** 2 + (y - 0.3) ** 2 < 0.02) & (np.abs(z - Z // 3) <= 0)
    signed[hypo] = -15.0
    affine = np.diag([-1.0, -1.0, 5.0, 1.0])
    return CaseMaps(affine=affine, input_hu=hu, recon={"cmm": recon, "fgm": recon.copy()},
                    signed={"cmm": signed, "fgm": 0.8 * signed})


def op_label(op: cutoffs.OperatingPoint) -> str:
    """'paper 99%', or 'manual cut-offs'."""
    return "manual cut-offs" if op.rule == "manual" else op.name
