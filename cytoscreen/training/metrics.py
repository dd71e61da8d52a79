"""Validation metrics with 95% confidence intervals (pure numpy / scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score

from cytoscreen import stats
from cytoscreen.scoring.card import Metric
from cytoscreen.stats import bootstrap_auc_interval


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(scores)))


def auc_with_ci(
    labels: npt.ArrayLike, scores: npt.ArrayLike, n_boot: int = 1000, seed: int = 0
) -> Metric:
    """ROC AUC with a percentile bootstrap 95% CI (resampling within each class)."""
    value, lo, hi = _auc_figures(labels, scores, n_boot, seed)
    return Metric(value=value, ci_low=lo, ci_high=hi, n=len(np.asarray(labels)), method="bootstrap")


def _auc_figures(
    labels: npt.ArrayLike, scores: npt.ArrayLike, n_boot: int, seed: int
) -> tuple[float, float, float]:
    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=float)
    pos, neg = s[y == 1], s[y == 0]
    lo, hi = (
        bootstrap_auc_interval(pos, neg, n_bootstrap=n_boot, seed=seed)
        if pos.size and neg.size and n_boot > 0
        else (float("nan"), float("nan"))
    )
    return auc(y, s), lo, hi


def cells_only_auc(
    labels: npt.ArrayLike,
    categories: Sequence[str],
    scores: npt.ArrayLike,
    background: str,
    seed: int = 0,
) -> Metric | None:
    """AUC of abnormal cells against NILM cells, examples of category ``background`` (patches
    with no cell) left out: the discrimination screening needs, since almost every patch of a
    slide holds cells. ``None`` when either class is missing once background is dropped."""
    keep = np.asarray(categories) != background
    y = np.asarray(labels).astype(int)[keep]
    if y.size == 0 or y.min() == y.max():
        return None
    return auc_with_ci(y, np.asarray(scores, dtype=float)[keep], seed=seed)


def proportion(k: int, n: int) -> Metric:
    """k/n with the exact (Clopper-Pearson) 95% CI, in the card's layout; n = 0 is not measured
    (value and interval None, see :mod:`cytoscreen.stats`)."""
    return Metric.of(stats.proportion(k, n))


def sens_spec(labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> dict[str, Metric]:
    y = np.asarray(labels).astype(bool)
    flagged = np.asarray(scores) >= threshold
    return {
        "sensitivity": proportion(int((flagged & y).sum()), int(y.sum())),
        "specificity": proportion(int((~flagged & ~y).sum()), int((~y).sum())),
    }


def by_category(
    categories: Sequence[str], scores: npt.ArrayLike, threshold: float
) -> dict[str, dict[str, float | int]]:
    """Per category (Bethesda or background): count, number flagged and the flagged share."""
    s = np.asarray(scores)
    cats = np.asarray(categories)
    out: dict[str, dict[str, float | int]] = {}
    for c in sorted(set(cats.tolist())):
        mask = cats == c
        flagged = int((s[mask] >= threshold).sum())
        out[c] = {
            "n": int(mask.sum()),
            "flagged": flagged,
            "flagged_rate": float(flagged / mask.sum()),
        }
    return out


def category_report(
    labels: npt.ArrayLike,
    categories: Sequence[str],
    scores: npt.ArrayLike,
    threshold: float,
    seed: int = 0,
) -> dict[str, dict[str, float | int]]:
    """Per category: count, flagged share at ``threshold`` with its exact 95% CI (sensitivity
    for an abnormal category, 1 - specificity for a negative one) and, for abnormal categories,
    the AUC of that category against all negatives (bootstrap 95% CI)."""
    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=float)
    cats = np.asarray(categories)
    out: dict[str, dict[str, float | int]] = {}
    for c in sorted(set(cats.tolist())):
        mask = cats == c
        positive = bool(y[mask].max()) if mask.any() else False
        flagged = int((s[mask] >= threshold).sum())
        n = int(mask.sum())
        hit = flagged if positive else n - flagged  # sensitivity or specificity counts
        value, lo, hi = stats.proportion(hit, n).figures()  # n >= 1: the category is present
        row: dict[str, float | int] = {
            "n": n,
            "flagged": flagged,
            "flagged_rate": flagged / n,
            ("sensitivity" if positive else "specificity"): value,
            "ci_low": lo,
            "ci_high": hi,
        }
        if positive:
            sel = mask | (y == 0)
            a, a_lo, a_hi = _auc_figures(y[sel], s[sel], n_boot=500, seed=seed)
            row.update(auc=a, auc_ci_low=a_lo, auc_ci_high=a_hi)
        out[c] = row
    return out
