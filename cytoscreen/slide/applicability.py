"""Does a threshold apply to this slide? Its patch scores against the calibration slides'.

A threshold is a statement about the score distribution of the slides it was chosen on. Most
patches of any slide are normal, so the distribution of a slide's patch scores says whether the
slide looks, *to the model*, like the calibration negatives: a new scanner, stain batch,
preparation or focus moves the scores of its normal background, and a slide with one abnormal
cell is then scored against a background the threshold was never set on.

``score_stats`` summarises a slide's scored patches by quantiles of their log-odds (the median,
the 90th and 99th percentiles); ``fit_score_reference`` takes the median and a robust spread of
each over the calibration negatives; ``check_scores`` gives the robust z of a slide's
statistics, two-sided (a background scored lower than usual can hide an abnormal cell just as
a higher one can), and on the low side also the range of the calibration negatives: a slide
whose quantile lies below every calibration negative's is unlike all of them (since
2026-12-07: a shifted one-abnormal-cell slide at z -3.5, inside the limit of 4, scored just
below the threshold). A slide beyond either is never called negative (``slide.decide``).
Pure numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cytoscreen.slide.decide import never_negative
from cytoscreen.slide.record import ScoreReference
from cytoscreen.types import TriageDecision

QUANTILES: dict[str, float] = {"q50": 0.50, "q90": 0.90, "q99": 0.99}
EPS = 1e-4  # probabilities are clipped to [EPS, 1 - EPS] before the log-odds
SPREAD_FLOOR = 0.25  # log-odds: a reference that happens to be tight is not over-trusted
MIN_PATCHES = 20  # fewer scored patches: the statistics are not measured
SCALE = 1.4826  # median absolute deviation of a normal distribution -> its standard deviation
N_KEY = "n"  # score_stats: how many patches the quantiles were taken over


def logit(p: npt.ArrayLike) -> npt.NDArray[np.float64]:
    q = np.clip(np.asarray(p, np.float64), EPS, 1.0 - EPS)
    out: npt.NDArray[np.float64] = np.log(q / (1.0 - q))
    return out


def score_stats(prob: npt.ArrayLike, cells: npt.ArrayLike | None = None) -> dict[str, float] | None:
    """Quantiles of the log-odds of a slide's scored patches (NaN = unscored, left out), over
    the patches holding cells when ``cells`` (a boolean per patch) leaves at least
    ``MIN_PATCHES``; None when too few patches were scored to say."""
    p = np.asarray(prob, np.float64).reshape(-1)
    ok = np.isfinite(p)
    if cells is not None:
        with_cells = ok & np.asarray(cells, bool).reshape(-1)
        if with_cells.sum() >= MIN_PATCHES:
            ok = with_cells
    if ok.sum() < MIN_PATCHES:
        return None
    z = logit(p[ok])
    out = {name: float(np.quantile(z, q)) for name, q in QUANTILES.items()}
    out[N_KEY] = float(ok.sum())
    return out


def fit_score_reference(
    stats: Sequence[Mapping[str, float]],
    *,
    limit: float,
    source: str,
    min_patches: int | None = None,
) -> ScoreReference:
    """Median and robust spread (scaled MAD, at least ``SPREAD_FLOOR``) of each statistic over
    the calibration negatives; ``limit`` is the largest |z| still called applicable;
    ``min_patches``: the fewest scored patches of any calibration slide (a smaller slide is
    unlike all of them)."""
    if len(stats) < 5:
        raise ValueError(f"a score reference needs at least 5 slides, got {len(stats)}")
    centre, spread, lo, hi = {}, {}, {}, {}
    for name in QUANTILES:
        v = np.array([s[name] for s in stats], np.float64)
        centre[name] = float(np.median(v))
        spread[name] = float(max(SCALE * np.median(np.abs(v - centre[name])), SPREAD_FLOOR))
        lo[name], hi[name] = float(v.min()), float(v.max())
    return ScoreReference(
        centre=centre,
        spread=spread,
        minimum=lo,
        maximum=hi,
        n_slides=len(stats),
        limit=limit,
        source=source,
        min_patches=min_patches,
    )


@dataclass(frozen=True)
class ScoreCheck:
    """A slide's patch scores against the reference."""

    shift: float  # largest |z|
    z: Mapping[str, float]
    applicable: bool  # within the limit (or not measured: see ``measured``)
    measured: bool
    note: str

    def to_dict(self) -> dict[str, object]:
        return {
            "shift": round(self.shift, 4),
            "z": {k: round(v, 3) for k, v in self.z.items()},
            "applicable": self.applicable,
            "measured": self.measured,
            "note": self.note,
        }


def check_scores(stats: Mapping[str, float] | None, ref: ScoreReference) -> ScoreCheck:
    """The robust z of each statistic; beyond ``ref.limit`` the threshold does not apply.
    Unmeasured statistics (too few patches) are not a finding here: a slide with so few
    patches is not assessable for other reasons."""
    if stats is None:
        return ScoreCheck(0.0, {}, True, False, "too few scored patches to compare")
    z = {k: (stats[k] - ref.centre[k]) / ref.spread[k] for k in ref.centre if k in stats}
    n = stats.get(N_KEY)
    if ref.min_patches is not None and n is not None and n < ref.min_patches:
        note = (
            f"{int(n):,} scored patches, fewer than the {ref.min_patches:,} of the smallest "
            "calibration slide: the threshold was not measured on slides this small"
        )
        return ScoreCheck(max((abs(v) for v in z.values()), default=0.0), z, False, True, note)
    worst = max(z, key=lambda k: abs(z[k]))
    shift = abs(z[worst])
    below_all = [k for k in z if stats[k] < ref.minimum[k]]
    if shift <= ref.limit and below_all:
        # scored lower than every calibration negative: the dangerous direction (a background
        # scored low can carry one abnormal cell below the threshold), so the range of the
        # calibration negatives bounds it, not only the robust z
        k = min(below_all, key=lambda name: z[name])
        note = (
            f"the {k[1:]}th percentile of its patch scores lies below every calibration "
            f"negative's (log-odds {stats[k]:.2f} < {ref.minimum[k]:.2f}; z={z[k]:+.1f})"
        )
        return ScoreCheck(shift, z, False, True, note)
    applicable = shift <= ref.limit
    where = "above" if z[worst] > 0 else "below"
    pct = worst[1:]
    note = (
        f"the {pct}th percentile of its patch scores lies {where} the calibration negatives' "
        f"(z={z[worst]:+.1f}, limit {ref.limit:g})"
    )
    return ScoreCheck(shift, z, applicable, True, note)


def never_negative_when_unlike(decision: TriageDecision, check: ScoreCheck) -> TriageDecision:
    """A slide the threshold does not apply to is not set aside (``slide.decide.never_negative``
    with the reason "scores unlike the calibration slides"); the check is still recorded by
    the caller."""
    if check.applicable:
        return decision
    return never_negative(decision, f"review: scores unlike the calibration slides ({check.note})")
