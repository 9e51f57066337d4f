"""Pre-processing: brain extraction, model grids, HU window and FGM's anatomy label map.

    from guad.preprocess import preprocess_ct, Preprocessed
    pp = preprocess_ct(ct)        # ct: guad.io.CTVolume

See `guad.preprocess.pipeline` for the geometry, `brain` for brain extraction and `anatomy`
for the label map.
"""

from guad.preprocess.anatomy import LABELS, anatomy_labels
from guad.preprocess.brain import extract_brain
from guad.preprocess.pipeline import (
    CMM_SHAPE,
    FGM_SHAPE,
    FOV_MM,
    WINDOW_HU,
    Preprocessed,
    model_to_hu,
    preprocess_ct,
    window,
)

__all__ = ["preprocess_ct", "Preprocessed", "extract_brain", "anatomy_labels", "LABELS",
           "window", "model_to_hu", "CMM_SHAPE", "FGM_SHAPE", "FOV_MM", "WINDOW_HU"]
