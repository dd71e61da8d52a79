"""Choose the slide threshold that meets a target sensitivity on labelled slides.

The threshold is the largest value whose sensitivity on the set is at least the target
(slides scoring >= threshold go to review). Figures come with exact Clopper-Pearson intervals,
and a warning says plainly when the set is too small to show the target with confidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

import cytoscreen
from cytoscreen.errors import BadCalibration
from cytoscreen.slide.learned import LearnedRule
from cytoscreen.slide.record import Calibration, ScoreReference, StratumFigures, TargetAt
from cytoscreen.stats import proportion


def positives_needed(target: float, confidence: float = 0.95) -> int | None:
    """Fewest positives, all detected, whose exact lower bound of sensitivity reaches ``target``.

    With n of n detected the Clopper-Pearson lower bound is ``(alpha/2) ** (1/n)``; None when the
    target is 1 (no finite set can show it).
    """
    if target >= 1.0:
        return None
    if target <= 0.0:
        return 1
    half_alpha = (1.0 - confidence) / 2.0
    n = max(1, math.ceil(math.log(half_alpha) / math.log(target)))
    while half_alpha ** (1.0 / n) < target:  # guard against rounding in the logs
        n += 1
    return n


def _check(
    scores: Sequence[float | None], labels: Sequence[int | bool]
) -> tuple[list[int], list[float], list[int], int]:
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    if not scores:
        raise BadCalibration("no slides to calibrate on")
    ys = [int(y) for y in labels]
    if any(y not in (0, 1) for y in ys):
        raise ValueError("labels must be 0 (negative) or 1 (abnormal)")
    kept = [i for i, s in enumerate(scores) if s is not None]
    vals = [float(scores[i]) for i in kept]  # type: ignore[arg-type]
    if not all(math.isfinite(v) for v in vals):
        raise ValueError("slide scores must be finite numbers or None")
    unscorable_pos = sum(ys[i] for i, s in enumerate(scores) if s is None)
    return kept, vals, [ys[i] for i in kept], unscorable_pos


def _ranked_positives(
    scores: Sequence[float | None], labels: Sequence[int | bool], target_sensitivity: float
) -> tuple[np.ndarray, int]:
    """The scored positives' scores, highest first, and the fewest detections m whose share
    m / n meets the target (a plain float comparison, no ceil rounding)."""
    if not 0.0 < target_sensitivity <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target_sensitivity}")
    _, vals, ys, _ = _check(scores, labels)
    pos = np.sort(np.array([v for v, y in zip(vals, ys, strict=True) if y == 1]))[::-1]
    n_pos = pos.size
    if n_pos == 0:
        raise BadCalibration(
            "no scorable positive (abnormal) slide in the calibration set: sensitivity cannot "
            "be measured, so no threshold can be chosen"
        )
    return pos, next(m for m in range(1, n_pos + 1) if m / n_pos >= target_sensitivity)


def choose_threshold(
    scores: Sequence[float | None],
    labels: Sequence[int | bool],
    target_sensitivity: float = 0.99,
) -> float:
    """The largest threshold t with sensitivity(score >= t) >= target on the scored slides."""
    pos, m = _ranked_positives(scores, labels, target_sensitivity)
    return float(pos[m - 1])


def lower_bound_threshold(
    scores: Sequence[float | None],
    labels: Sequence[int | bool],
    target_sensitivity: float = 0.99,
    confidence: float = 0.95,
) -> float:
    """The largest threshold t whose sensitivity's exact lower bound (Clopper-Pearson, two-sided
    ``confidence``) is at least the target on the scored slides: the set must *show* the target,
    not only reach it on average. Where no threshold can (too few positives: fewer than
    ``positives_needed`` detected), the one that detects every positive: the most the set can
    show. Never above :func:`choose_threshold`'s: the search starts at its detections, since an
    exact lower bound never exceeds the share detected."""
    pos, fewest = _ranked_positives(scores, labels, target_sensitivity)
    for m in range(fewest, pos.size + 1):  # fewest detections whose lower bound reaches it
        lower = proportion(m, pos.size, confidence).lower
        if lower is not None and lower >= target_sensitivity:
            return float(pos[m - 1])
    return float(pos[-1])


def stratum_thresholds(
    scores: Sequence[float | None],
    labels: Sequence[int | bool],
    strata: Mapping[str, Sequence[str]],
    target_sensitivity: float,
) -> dict[tuple[str, str], float]:
    """The threshold each stratum alone would get (strata without a scorable positive have
    none): ``{(grouping, stratum): threshold}``."""
    out: dict[tuple[str, str], float] = {}
    for grouping, values in strata.items():
        if len(values) != len(scores):
            raise ValueError(
                f"strata {grouping!r} has {len(values)} values for {len(scores)} slides"
            )
        for stratum in sorted(set(values)):
            idx = [i for i, v in enumerate(values) if v == stratum]
            pos = [i for i in idx if int(labels[i]) == 1 and scores[i] is not None]
            if pos:
                out[(grouping, stratum)] = choose_threshold(
                    [scores[i] for i in idx], [labels[i] for i in idx], target_sensitivity
                )
    return out


def _stratum_figures(
    s: np.ndarray, y: np.ndarray, flagged: np.ndarray, confidence: float
) -> StratumFigures:
    pos, neg = y, ~y  # a stratum without positives (negatives) has no sensitivity (specificity)
    return StratumFigures(
        sensitivity=proportion(
            int((flagged & pos).sum()), int(pos.sum()), confidence
        ).if_measured(),
        specificity=proportion(
            int((~flagged & neg).sum()), int(neg.sum()), confidence
        ).if_measured(),
    )


def calibrate(
    scores: Sequence[float | None],
    labels: Sequence[int | bool],
    *,
    model_id: str,
    rule: str,
    data_source: str,
    target_sensitivity: float = 0.99,
    confidence: float = 0.95,
    learned: LearnedRule | None = None,
    now: datetime | None = None,
    scoring: dict[str, str] | None = None,
    strata: Mapping[str, Sequence[str]] | None = None,
    specificity_mask: Sequence[bool] | None = None,
    applicability: ScoreReference | None = None,
    target_at: TargetAt = "point",
) -> Calibration:
    """Choose the threshold and build the calibration record (None scores: unscorable slides).

    ``scoring``: the runtime and precision that made the scores, recorded so that ``screen``
    can say when it scores differently. ``strata``: for each grouping (e.g. ``n_abnormal``,
    ``prep``) a label per slide; the threshold is then the lowest of the pooled and every
    stratum's own, so the target holds in each, and the record keeps each stratum's figures.
    ``specificity_mask``: the negatives that count for specificity (e.g. only adequate,
    full-size slides; positives are unaffected). ``applicability``: the score reference to
    record. ``target_at``: "point" holds the target as the pooled sensitivity on the set;
    "lower_bound" as its exact lower bound (``lower_bound_threshold``; every stratum still at
    the point target: no stratum is large enough to show 99% with confidence)."""
    if target_at == "lower_bound":
        threshold = lower_bound_threshold(scores, labels, target_sensitivity, confidence)
    elif target_at == "point":
        threshold = choose_threshold(scores, labels, target_sensitivity)
    else:
        raise ValueError(f"target_at must be 'point' or 'lower_bound', not {target_at!r}")
    if strata:
        per = stratum_thresholds(scores, labels, strata, target_sensitivity)
        threshold = min([threshold, *per.values()])
    keep_neg = (
        [True] * len(scores) if specificity_mask is None else [bool(m) for m in specificity_mask]
    )
    if len(keep_neg) != len(scores):
        raise ValueError("specificity_mask needs one value per slide")
    dropped = [i for i, m in enumerate(keep_neg) if not m and int(labels[i]) == 0]
    if dropped:  # negatives that do not count: out of every figure
        keep = [i for i in range(len(scores)) if i not in set(dropped)]
        scores = [scores[i] for i in keep]
        labels = [labels[i] for i in keep]
        strata = {g: [v[i] for i in keep] for g, v in (strata or {}).items()}
    _, vals, ys, unscorable_pos = _check(scores, labels)
    s = np.array(vals)
    y = np.array(ys, dtype=bool)
    flagged = s >= threshold
    tp = int(np.count_nonzero(flagged & y))
    fn = int(np.count_nonzero(~flagged & y))
    tn = int(np.count_nonzero(~flagged & ~y))
    fp = int(np.count_nonzero(flagged & ~y))
    n_slides = len(scores)
    n_unscorable = n_slides - s.size
    sens = proportion(tp, tp + fn, confidence)  # choose_threshold saw a scorable positive: n >= 1
    spec = proportion(tn, tn + fp, confidence).if_measured()
    pct = f"{confidence:.0%}"
    warnings: list[str] = []
    if sens.lower is not None and sens.lower < target_sensitivity:
        need = positives_needed(target_sensitivity, confidence)
        how_many = (
            f"about {need} positive slides with no misses are needed for the lower bound to "
            f"reach {target_sensitivity:g}"
            if need is not None
            else "no finite set of slides can show a sensitivity of 1 with confidence"
        )
        warnings.append(
            f"with {tp + fn} positive slides ({tp} detected), the {pct} lower bound of "
            f"sensitivity is {sens.lower:.3f}, {target_sensitivity - sens.lower:.3f} below the "
            f"{target_sensitivity:g} target; {how_many}"
        )
    if spec is None:
        warnings.append("no scorable negative slide in the set: specificity is unknown")
    by_stratum: dict[str, dict[str, StratumFigures]] = {}
    if strata:
        kept_idx, _, _, _ = _check(scores, labels)
        for grouping, values in strata.items():
            v = np.array([values[i] for i in kept_idx])
            by_stratum[grouping] = {
                st: _stratum_figures(s[v == st], y[v == st], flagged[v == st], confidence)
                for st in sorted(set(v.tolist()))
            }
    if dropped:
        warnings.append(
            f"{len(dropped)} negative slide(s) not counted (not in the specificity set, e.g. "
            "smaller than an adequate preparation)"
        )
    if n_unscorable:
        warnings.append(
            f"{n_unscorable} slide(s) ({unscorable_pos} positive) could not be scored: they are "
            "left out of these figures and are reported NOT_ASSESSABLE, never NEGATIVE"
        )
    return Calibration(
        threshold=threshold,
        target_sensitivity=target_sensitivity,
        confidence=confidence,
        sensitivity=sens,
        specificity=spec,
        tp=tp,
        fn=fn,
        tn=tn,
        fp=fp,
        set_aside_share=(tn + fn) / n_slides,
        n_slides=n_slides,
        n_unscorable=n_unscorable,
        n_unscorable_positive=unscorable_pos,
        data_source=data_source,
        model_id=model_id,
        rule=rule,
        created=now or datetime.now(UTC),
        package_version=cytoscreen.__version__,
        warnings=tuple(warnings),
        learned=learned,
        scoring=scoring,
        strata=by_stratum,
        applicability=applicability,
        target_at=target_at,
    )
