"""Slide-level maths: aggregation rules, suspicious fields, threshold calibration, triage.

Pure numpy/scipy (scikit-learn only to fit the learned rule); the only file I/O is
calibration.json in :mod:`cytoscreen.slide.record`.
"""

from cytoscreen.errors import BadCalibration
from cytoscreen.slide.aggregate import aggregate, noisy_or, rule_label, score_slide, scored_probs
from cytoscreen.slide.decide import Adequacy, decide
from cytoscreen.slide.fields import find_fields
from cytoscreen.slide.learned import LearnedRule, fit_learned_rule, slide_features
from cytoscreen.slide.record import Calibration, load_calibration, save_calibration
from cytoscreen.slide.settings import AggregationSettings, FieldSettings, TriageSettings
from cytoscreen.slide.threshold import calibrate, choose_threshold, positives_needed
from cytoscreen.stats import Proportion, clopper_pearson, proportion

__all__ = [
    "Adequacy",
    "AggregationSettings",
    "BadCalibration",
    "Calibration",
    "FieldSettings",
    "LearnedRule",
    "Proportion",
    "TriageSettings",
    "aggregate",
    "calibrate",
    "choose_threshold",
    "clopper_pearson",
    "decide",
    "find_fields",
    "fit_learned_rule",
    "load_calibration",
    "noisy_or",
    "positives_needed",
    "proportion",
    "rule_label",
    "save_calibration",
    "score_slide",
    "scored_probs",
    "slide_features",
]
