"""Slide-level screening metrics with confidence intervals: pure numpy / scipy / scikit-learn.

Conventions: ``y`` is 1 for a positive (abnormal) slide, 0 for a negative one; a slide is
called positive (sent to review) when its score is ``>= threshold``. Proportions carry their
counts and exact Clopper-Pearson intervals (:class:`cytoscreen.stats.Proportion`); a figure
over nothing (n = 0) is not measured and these records hold it as ``None``, never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm, rankdata
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from cytoscreen.slide.threshold import choose_threshold
from cytoscreen.stats import Proportion, bootstrap_auc_interval, proportion

TARGET_SENSITIVITIES = (0.95, 0.98, 0.99, 1.0)


def rate(k: int, n: int, confidence: float = 0.95) -> Proportion | None:
    """k of n with its exact interval; None when n is 0 (not measured: the field of the
    record that holds it is optional)."""
    return proportion(k, n, confidence).if_measured()


def _arrays(scores: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(y).ravel()
    if s.shape != labels.shape:
        raise ValueError(f"{s.size} scores but {labels.size} labels")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (negative) or 1 (positive)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (leave not-assessable slides out)")
    return s, labels.astype(bool)


@dataclass(frozen=True)
class Counts:
    tp: int
    fn: int
    tn: int
    fp: int

    @classmethod
    def of(cls, called: ArrayLike, y: ArrayLike) -> Counts:
        """Counts of calls (True: sent to review) against labels (1: positive)."""
        c = np.asarray(called, dtype=bool).ravel()
        t = np.asarray(y, dtype=bool).ravel()
        if c.shape != t.shape:
            raise ValueError(f"{c.size} calls but {t.size} labels")
        (tn, fp), (fn, tp) = confusion_matrix(t, c, labels=[False, True])
        return cls(tp=int(tp), fn=int(fn), tn=int(tn), fp=int(fp))

    @property
    def n(self) -> int:
        return self.tp + self.fn + self.tn + self.fp


@dataclass(frozen=True)
class Operating:
    """Figures of one decision rule on a set of slides."""

    counts: Counts
    sensitivity: Proportion | None  # TP / positives
    specificity: Proportion | None  # TN / negatives
    ppv: Proportion | None  # TP / called positive
    npv: Proportion | None  # TN / called negative
    set_aside: Proportion  # called negative / all slides (not-assessable ones included)


def operating(counts: Counts, n_total: int | None = None, confidence: float = 0.95) -> Operating:
    """Sensitivity, specificity, PPV, NPV and the share set aside as negative.

    ``n_total`` is every slide of the evaluation (default: the counted ones); slides not
    assessable are in it but never set aside, so they lower the workload reduction.
    """
    c = counts
    total = c.n if n_total is None else n_total
    if total < c.n or total < 1:
        raise ValueError(f"n_total {total} must be >= 1 and >= the {c.n} counted slides")
    return Operating(
        counts=c,
        sensitivity=rate(c.tp, c.tp + c.fn, confidence),
        specificity=rate(c.tn, c.tn + c.fp, confidence),
        ppv=rate(c.tp, c.tp + c.fp, confidence),
        npv=rate(c.tn, c.tn + c.fn, confidence),
        set_aside=proportion(c.tn + c.fn, total, confidence),
    )


@dataclass(frozen=True)
class Roc:
    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    thresholds: tuple[float, ...]  # thresholds[0] is +inf (nothing called positive)
    auc: float
    auc_lower: float
    auc_upper: float
    n_positive: int
    n_negative: int
    n_bootstrap: int


def bootstrap_auc_ci(
    scores: ArrayLike,
    y: ArrayLike,
    *,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of the AUC, resampling positives and negatives separately."""
    s, t = _arrays(scores, y)
    try:
        return bootstrap_auc_interval(
            s[t], s[~t], n_bootstrap=n_bootstrap, confidence=confidence, seed=seed
        )
    except ValueError:
        raise ValueError("the AUC needs at least one positive and one negative slide") from None


def roc(
    scores: ArrayLike,
    y: ArrayLike,
    *,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Roc | None:
    """ROC curve and AUC with a bootstrap interval; None when a class is missing."""
    s, t = _arrays(scores, y)
    n_pos = int(t.sum())
    if n_pos == 0 or n_pos == t.size:
        return None
    fpr, tpr, thr = roc_curve(t, s, drop_intermediate=False)
    lo, hi = bootstrap_auc_ci(s, t, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    return Roc(
        fpr=tuple(float(v) for v in fpr),
        tpr=tuple(float(v) for v in tpr),
        thresholds=tuple(float(v) for v in thr),
        auc=float(roc_auc_score(t, s)),
        auc_lower=lo,
        auc_upper=hi,
        n_positive=n_pos,
        n_negative=int(t.size - n_pos),
        n_bootstrap=n_bootstrap,
    )


@dataclass(frozen=True)
class OperatingPoint:
    target: float
    threshold: float | None  # None: no positive slide to choose it on
    figures: Operating | None


def operating_points(
    scores: ArrayLike,
    y: ArrayLike,
    *,
    n_total: int | None = None,
    targets: Sequence[float] = TARGET_SENSITIVITIES,
    confidence: float = 0.95,
) -> list[OperatingPoint]:
    """For each target sensitivity: the largest threshold meeting it on these slides, and the
    specificity and workload reduction it gives (``n_total`` as in :func:`operating`)."""
    s, t = _arrays(scores, y)
    out = []
    for target in targets:
        if not t.any():
            out.append(OperatingPoint(target, None, None))
            continue
        thr = choose_threshold(list(s), list(t.astype(int)), target)
        figures = operating(Counts.of(s >= thr, t), n_total, confidence)
        out.append(OperatingPoint(target, thr, figures))
    return out


@dataclass(frozen=True)
class PairedAuc:
    """DeLong's test of two correlated AUCs (both runs scored the same slides)."""

    auc_a: float
    auc_b: float
    difference: float  # b - a
    se: float
    lower: float
    upper: float
    z: float | None  # None when the difference has no spread (identical rankings)
    p_value: float
    n_positive: int
    n_negative: int


def _delong_components(
    s: NDArray[np.float64], t: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-positive (V10) and per-negative (V01) placement values of one score vector."""
    pos, neg = s[t], s[~t]
    m, n = pos.size, neg.size
    all_ranks = rankdata(np.concatenate([pos, neg]))
    v10 = (all_ranks[:m] - rankdata(pos)) / n
    v01 = 1.0 - (all_ranks[m:] - rankdata(neg)) / m
    return v10, v01


def delong_paired(
    scores_a: ArrayLike, scores_b: ArrayLike, y: ArrayLike, *, confidence: float = 0.95
) -> PairedAuc:
    """Difference of the AUCs of two score vectors on the same slides (DeLong et al. 1988)."""
    a, t = _arrays(scores_a, y)
    b, t2 = _arrays(scores_b, y)
    m, n = int(t.sum()), int((~t).sum())
    if m < 2 or n < 2:
        raise ValueError("the paired AUC test needs at least two positive and two negative slides")
    va10, va01 = _delong_components(a, t)
    vb10, vb01 = _delong_components(b, t2)
    s10 = np.cov(np.vstack([va10, vb10]))
    s01 = np.cov(np.vstack([va01, vb01]))
    contrast = np.array([-1.0, 1.0])
    var = float(contrast @ (s10 / m + s01 / n) @ contrast)
    auc_a, auc_b = float(va10.mean()), float(vb10.mean())
    diff = auc_b - auc_a
    se = float(np.sqrt(max(var, 0.0)))
    zq = float(norm.ppf(0.5 + confidence / 2.0))
    if se <= 1e-12:
        z, p = None, 1.0 if abs(diff) < 1e-12 else 0.0
    else:
        z = diff / se
        p = float(2.0 * norm.sf(abs(z)))
    return PairedAuc(
        auc_a=auc_a,
        auc_b=auc_b,
        difference=diff,
        se=se,
        lower=diff - zq * se,
        upper=diff + zq * se,
        z=z,
        p_value=p,
        n_positive=m,
        n_negative=n,
    )


def sensitivity_by_category(
    called: Sequence[bool],
    categories: Sequence[str],
    order: Sequence[str],
    confidence: float = 0.95,
) -> dict[str, Proportion]:
    """Detected / positives per worst Bethesda category (only categories present, in order;
    unknown categories last as ``"unknown"``)."""
    if len(called) != len(categories):
        raise ValueError(f"{len(called)} calls but {len(categories)} categories")
    keys = [c if c in order else "unknown" for c in categories]
    out: dict[str, Proportion] = {}
    for cat in [*order, "unknown"]:
        hits = [bool(c) for c, k in zip(called, keys, strict=True) if k == cat]
        if hits:
            out[cat] = proportion(sum(hits), len(hits), confidence)
    return out
