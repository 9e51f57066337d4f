"""Synthetic non-contrast head-CT cohorts (see docs/architecture.md, guad.synth).

    from guad.synth import generate_scan, FINDINGS, CRITICAL, BENIGN
    scan = generate_scan(seed=3, finding="ich", size=256)
"""

from guad.synth.findings import BENIGN, CRITICAL
from guad.synth.generator import SynthScan, generate_scan
from guad.synth.subject import DEFAULT_SITE, Site

FINDINGS: tuple[str, ...] = CRITICAL + BENIGN


def __getattr__(name):  # cohort helpers load lazily (pandas)
    if name in ("PRESETS", "Preset", "write_cohort", "remake_scan", "SITES"):
        from guad.synth import cohort
        return getattr(cohort, name)
    raise AttributeError(name)


__all__ = ["generate_scan", "SynthScan", "FINDINGS", "CRITICAL", "BENIGN", "Site", "DEFAULT_SITE",
           "PRESETS", "Preset", "write_cohort", "remake_scan", "SITES"]
