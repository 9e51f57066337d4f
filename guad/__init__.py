"""guad: unsupervised anomaly detection in non-contrast head CT to reduce workload.

Data flows one way:
    volume (guad.io) -> pre-processing (guad.preprocess) -> reconstruction (guad.sampling)
    -> difference map and score (guad.scoring) -> store (guad.store) -> metrics (guad.metrics)
    -> app pages.

Synthetic cohorts for the demo, tests and benchmarks come from guad.synth.
This package never imports Streamlit.
"""

__version__ = "0.1.0"
