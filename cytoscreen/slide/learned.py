"""The learned aggregation rule: logistic regression on a few order statistics of a slide.

Features of one slide (scored patches only): logit of the best patch, logit of the top-k mean,
log(1 + patches at or over the patch threshold) and the share of patches at or over it. They are
standardised and weighed by coefficients fitted on validation slides (scikit-learn); the
coefficients travel in calibration.json, so applying the rule needs numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cytoscreen.slide.settings import AggregationSettings

FEATURES = ("logit_max", "logit_top_k_mean", "log1p_count_over", "share_over")
_EPS = 1e-6
FloatArray = npt.NDArray[np.float64]


class LearnedRule(BaseModel):
    """Standardised logistic regression over :data:`FEATURES`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: tuple[str, ...] = FEATURES
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    top_k: int = Field(ge=1)
    patch_threshold: float = Field(ge=0.0, le=1.0)
    n_train: int = Field(ge=2)

    @model_validator(mode="after")
    def _shapes(self) -> LearnedRule:
        if self.features != FEATURES:
            raise ValueError(f"features must be {FEATURES}, got {self.features}")
        n = len(FEATURES)
        if not (len(self.mean) == len(self.scale) == len(self.coef) == n):
            raise ValueError(f"mean, scale and coef must each hold {n} numbers")
        if any(s <= 0 for s in self.scale):
            raise ValueError("scale values must be positive")
        return self

    def predict(self, features: FloatArray) -> float:
        from scipy.special import expit  # here, not at start-up: the default rule is fixed

        z = (features - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(expit(float(z @ np.asarray(self.coef)) + self.intercept))


def slide_features(scored: FloatArray, top_k: int, patch_threshold: float) -> FloatArray:
    """The four features of one slide from its scored (finite, 0-1) probabilities; needs >= 1."""
    if scored.size == 0:
        raise ValueError("a slide with no scored patches has no features")
    from scipy.special import logit  # here, not at start-up: the default rule is fixed

    ordered = np.sort(scored)[::-1]
    p_max = float(ordered[0])
    p_top = float(ordered[:top_k].mean())
    n_over = int(np.count_nonzero(scored >= patch_threshold))

    lo, hi = _EPS, 1.0 - _EPS
    return np.array(
        [
            logit(min(max(p_max, lo), hi)),
            logit(min(max(p_top, lo), hi)),
            np.log1p(n_over),
            n_over / scored.size,
        ]
    )


def fit_learned_rule(
    slides: Sequence[FloatArray],
    labels: Sequence[int],
    settings: AggregationSettings,
    *,
    c: float = 1.0,
) -> LearnedRule:
    """Fit the rule on validation slides (scored probabilities per slide, label 1 = abnormal)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=np.int64)
    if len(slides) != y.size:
        raise ValueError(f"{len(slides)} slides but {y.size} labels")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise ValueError("fitting the learned rule needs both negative and positive slides")
    x = np.stack([slide_features(s, settings.top_k, settings.patch_threshold) for s in slides])
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale <= 1e-12] = 1.0
    model = LogisticRegression(C=c, max_iter=1000)
    model.fit((x - mean) / scale, y)
    return LearnedRule(
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in model.coef_[0]),
        intercept=float(model.intercept_[0]),
        top_k=settings.top_k,
        patch_threshold=settings.patch_threshold,
        n_train=int(y.size),
    )
