"""Statistics shared by training, calibration and QA (pure numpy/scipy, no I/O).

One implementation each of the exact binomial interval and the bootstrap AUC interval, so the
model card, the calibration record and the QA report quote figures computed the same way, and
one record for "k of n with its interval", :class:`Proportion`, made by :func:`proportion`.

The convention for n = 0: a proportion over nothing is *not measured*. Its value and both ends
of its interval are None: never NaN, never 0, never a division by zero. Records whose field is
optional (the calibration's specificity, QA's PPV) write such a figure as None
(:meth:`Proportion.if_measured`); the model card's ``Metric`` writes it with null value and
interval and n = 0.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Proportion(BaseModel):
    """k of n, with its exact (Clopper-Pearson) two-sided confidence interval.

    n = 0 is "not measured": k is 0 and value, lower and upper are None. Otherwise all three
    are numbers in [0, 1] with lower <= value <= upper. Serialises as ``{k, n, value, lower,
    upper}`` (the layout of calibration.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: ClassVar[str] = "clopper-pearson"

    k: int = Field(ge=0)
    n: int = Field(ge=0)
    value: float | None = Field(ge=0.0, le=1.0)
    lower: float | None = Field(ge=0.0, le=1.0)
    upper: float | None = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> Proportion:
        if self.k > self.n:
            raise ValueError(f"inconsistent proportion {self.k}/{self.n}")
        ends = (self.value, self.lower, self.upper)
        if self.n == 0:
            if any(v is not None for v in ends):
                raise ValueError("a proportion over nothing (n = 0) has no value or interval")
        elif self.value is None or self.lower is None or self.upper is None:
            raise ValueError(f"proportion {self.k}/{self.n} lacks its value or interval")
        elif not self.lower <= self.value <= self.upper:
            raise ValueError(f"inconsistent proportion {self.k}/{self.n}")
        return self

    @property
    def measured(self) -> bool:
        """False for a proportion over nothing (n = 0)."""
        return self.n > 0

    def figures(self) -> tuple[float, float, float]:
        """(value, lower, upper) of a measured proportion; ValueError when n = 0."""
        if self.value is None or self.lower is None or self.upper is None:
            raise ValueError("a proportion over nothing (n = 0) has no value or interval")
        return self.value, self.lower, self.upper

    def if_measured(self) -> Proportion | None:
        """This proportion, or None when it is not measured (n = 0): for records whose
        optional field stands for "not measured"."""
        return self if self.measured else None


def proportion(k: int, n: int, confidence: float = 0.95) -> Proportion:
    """k of n with its exact interval; n = 0 gives the not-measured proportion (no value)."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"k = {k} of n = {n} is not a proportion")
    if n == 0:
        return Proportion(k=0, n=0, value=None, lower=None, upper=None)
    lo, hi = clopper_pearson(k, n, confidence)
    return Proportion(k=k, n=n, value=k / n, lower=lo, upper=hi)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval of a binomial proportion k/n (n >= 1)."""
    from scipy.stats import binomtest  # scipy.stats costs ~0.7 s to import: only when used

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def auc_mann_whitney(pos: NDArray[np.float64], neg: NDArray[np.float64]) -> NDArray[np.float64]:
    """AUC along the last axis: P(pos > neg) + P(tie) / 2, from midranks (ties handled)."""
    from scipy.stats import rankdata

    m, n = pos.shape[-1], neg.shape[-1]
    ranks = rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    return np.asarray((ranks[..., :m].sum(axis=-1) - m * (m + 1) / 2.0) / (m * n))


def bootstrap_auc_interval(
    pos: NDArray[np.float64],
    neg: NDArray[np.float64],
    *,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of the AUC, resampling positives and negatives separately."""
    if pos.size == 0 or neg.size == 0:
        raise ValueError("the AUC needs at least one positive and one negative")
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_bootstrap)
    step = max(1, 2_000_000 // (pos.size + neg.size))  # bounded memory per block
    for start in range(0, n_bootstrap, step):
        b = min(step, n_bootstrap - start)
        bp = pos[rng.integers(0, pos.size, size=(b, pos.size))]
        bn = neg[rng.integers(0, neg.size, size=(b, neg.size))]
        aucs[start : start + b] = auc_mann_whitney(bp, bn)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(aucs, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)
