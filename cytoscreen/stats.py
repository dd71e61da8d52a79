"""Statistics shared by training, calibration and QA (pure numpy/scipy, no I/O).

One implementation each of the exact binomial interval and the bootstrap AUC interval, so the
model card, the calibration record and the QA report quote figures computed the same way.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


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
