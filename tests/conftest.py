"""Shared fixtures: one tiny synthetic cohort and tiny random-weight checkpoints per test session."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """`python -m guad synth --preset tiny --size 96` once; returns the folder (manifest.csv inside)."""
    out = tmp_path_factory.mktemp("tiny_cohort")
    subprocess.run([sys.executable, "-m", "guad", "synth", "--preset", "tiny", "--size", "96",
                    "--out", str(out), "--quiet"], check=True)
    return out


@pytest.fixture
def small_manifest(tiny_cohort, tmp_path) -> Path:
    """A copy of a few val/test scans of the tiny cohort plus one corrupt file (named 'broken')."""
    m = pd.read_csv(tiny_cohort / "manifest.csv", dtype=str, keep_default_na=False)
    picked = pd.concat([m[m.split == "val"].head(2), m[(m.split == "test") & (m.label == "critical")].head(1),
                        m[(m.split == "test") & (m.label == "normal")].head(1)])
    (tmp_path / "images").mkdir()
    for p in picked["path"]:
        shutil.copy(tiny_cohort / p, tmp_path / p)
    broken = tmp_path / "images" / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 this is not a gzip stream")
    extra = pd.DataFrame([{"scan_id": "broken", "path": "images/broken.nii.gz", "site": "siteA", "split": "test",
                           "label": "normal", "finding": "", "lesion_ml": "0", "seed": "1"}])
    out = tmp_path / "manifest.csv"
    pd.concat([picked, extra]).to_csv(out, index=False)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Random-weight checkpoints of the test-only tiny configs, in the shipped format."""
    from guad.models import HDAE, get_config

    out = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for m in ("cmm", "fgm"):
        cfg = get_config(f"tiny-{m}")
        torch.manual_seed(0)
        paths[m] = out / f"tiny-{m}.pt"
        torch.save({"config": cfg.to_dict(), "model": HDAE(cfg).state_dict()}, paths[m])
    return paths
