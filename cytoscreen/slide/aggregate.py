"""Patch probabilities -> one slide score, by a rule chosen by name.

All rules ignore NaN patches (not scored: unreadable) and give ``None``, never 0, when a slide
has no scored patch: "nothing could be looked at" must not read as "nothing abnormal".
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cytoscreen.slide.fields import find_fields
from cytoscreen.slide.learned import LearnedRule, slide_features
from cytoscreen.slide.settings import AggregationSettings, FieldSettings
from cytoscreen.types import SlideScore

FloatArray = npt.NDArray[np.float64]


def scored_probs(prob: npt.ArrayLike) -> FloatArray:
    """The finite probabilities of a slide (NaN dropped), checked to lie in [0, 1]."""
    arr = np.asarray(prob, dtype=np.float64).reshape(-1)
    kept = arr[~np.isnan(arr)]
    if kept.size and not (np.isfinite(kept).all() and kept.min() >= 0.0 and kept.max() <= 1.0):
        raise ValueError("patch probabilities must lie in [0, 1] (NaN marks an unscored patch)")
    return kept


def rule_label(settings: AggregationSettings) -> str:
    """The rule and its parameters as one string, e.g. ``top_k_mean(k=10)``."""
    match settings.rule:
        case "max":
            return "max"
        case "top_k_mean":
            return f"top_k_mean(k={settings.top_k})"
        case "noisy_or":
            k = settings.noisy_or_top_k
            return f"noisy_or(k={'all' if k is None else k})"
        case "count_over":
            return f"count_over(t={settings.patch_threshold:g})"
        case "learned":
            return f"learned(k={settings.top_k},t={settings.patch_threshold:g})"
    raise ValueError(f"unknown aggregation rule {settings.rule!r}")  # pragma: no cover


def noisy_or(scored: FloatArray) -> float:
    """P(at least one patch abnormal) = 1 - prod(1 - p), summed in log space.

    ``log1p(-p)`` keeps small probabilities exact and ``-expm1`` keeps the result exact near 0;
    p = 1 gives log 0 = -inf and a score of exactly 1, never NaN.
    """
    with np.errstate(divide="ignore"):
        log_none = float(np.sum(np.log1p(-scored)))
    return float(-np.expm1(log_none))


def aggregate(
    prob: npt.ArrayLike,
    settings: AggregationSettings,
    *,
    learned: LearnedRule | None = None,
) -> float | None:
    """The slide score of ``prob`` (N,) under ``settings.rule``; None if no patch was scored.

    ``count_over`` gives a count of patches (not a probability); ``learned`` needs the fitted
    ``learned`` rule (from the calibration record).
    """
    scored = scored_probs(prob)
    if scored.size == 0:
        return None
    match settings.rule:
        case "max":
            return float(scored.max())
        case "top_k_mean":
            k = min(settings.top_k, scored.size)
            return float(np.partition(scored, scored.size - k)[scored.size - k :].mean())
        case "noisy_or":
            n_or = settings.noisy_or_top_k
            if n_or is not None and n_or < scored.size:
                scored = np.partition(scored, scored.size - n_or)[scored.size - n_or :]
            return noisy_or(scored)
        case "count_over":
            return float(np.count_nonzero(scored >= settings.patch_threshold))
        case "learned":
            if learned is None:
                raise ValueError(
                    "the learned rule needs its coefficients: load them from calibration.json"
                )
            if learned.top_k != settings.top_k or learned.patch_threshold != (
                settings.patch_threshold
            ):
                raise ValueError(
                    f"the learned rule was fitted with top_k={learned.top_k}, patch_threshold="
                    f"{learned.patch_threshold:g}; the settings say top_k={settings.top_k}, "
                    f"patch_threshold={settings.patch_threshold:g}"
                )
            return learned.predict(slide_features(scored, learned.top_k, learned.patch_threshold))
    raise ValueError(f"unknown aggregation rule {settings.rule!r}")  # pragma: no cover


def score_slide(
    prob: npt.ArrayLike,
    coords: npt.ArrayLike,
    size_l0: float,
    *,
    cellularity: int,
    obscured: float | None = None,
    settings: AggregationSettings | None = None,
    field_settings: FieldSettings | None = None,
    learned: LearnedRule | None = None,
) -> SlideScore:
    """Aggregate one slide and rank its suspicious fields.

    ``prob`` (N,) from ``scores/<model_id>/prob`` (NaN = not scored), ``coords`` (N, 2) level-0
    top-left corners and ``size_l0`` the patch side from the patch cache, ``cellularity`` the
    estimated number of squamous cells on the slide, ``obscured`` the estimated share of its
    cell-bearing area under blood or thick overlap (None: unknown).
    """
    settings = settings or AggregationSettings()
    arr = np.asarray(prob, dtype=np.float64).reshape(-1)
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    return SlideScore(
        score=aggregate(arr, settings, learned=learned),
        rule=rule_label(settings),
        n_patches=int(arr.size),
        n_scored=int(arr.size) - n_nan,
        n_unreadable=n_nan,
        cellularity=int(cellularity),
        obscured=None if obscured is None else float(obscured),
        fields=find_fields(arr, coords, size_l0, field_settings or FieldSettings()),
    )
