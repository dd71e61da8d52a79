"""QA maths against hand-computed cases (exact intervals checked with beta quantiles)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta

from cytoscreen.qa import (
    Counts,
    bootstrap_auc_ci,
    delong_paired,
    field_hits,
    first_hit_rank,
    operating,
    operating_points,
    rate,
    roc,
    sensitivity_by_category,
)
from cytoscreen.qa.report import format_proportion
from cytoscreen.stats import auc_mann_whitney, proportion

POS = [0.9, 0.6, 0.2]
NEG = [0.7, 0.3, 0.1, 0.05]


def _exact(k: int, n: int) -> tuple[float, float]:
    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def test_counts_and_operating_figures_by_hand() -> None:
    scores = np.array(POS + NEG)
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    c = Counts.of(scores >= 0.5, y)
    assert (c.tp, c.fn, c.tn, c.fp) == (2, 1, 3, 1)
    op = operating(c, n_total=9)  # two more slides were not assessable
    assert op.sensitivity is not None and op.specificity is not None
    assert (op.sensitivity.k, op.sensitivity.n) == (2, 3)
    assert (op.specificity.k, op.specificity.n) == (3, 4)
    assert op.ppv is not None and (op.ppv.k, op.ppv.n) == (2, 3)
    assert op.npv is not None and (op.npv.k, op.npv.n) == (3, 4)
    assert (op.set_aside.k, op.set_aside.n) == (4, 9)  # TN + FN over every slide
    assert (op.sensitivity.lower, op.sensitivity.upper) == pytest.approx(_exact(2, 3))
    assert (op.specificity.lower, op.specificity.upper) == pytest.approx(_exact(3, 4))


def test_a_rate_over_nothing_is_none_and_n_total_is_checked() -> None:
    assert rate(0, 0) is None
    op = operating(Counts(tp=0, fn=0, tn=3, fp=1))  # all negatives
    assert op.sensitivity is None
    assert op.specificity is not None and op.specificity.value == 0.75
    assert op.ppv is not None and (op.ppv.k, op.ppv.n) == (0, 1)  # the one call is a FP
    assert operating(Counts(tp=0, fn=0, tn=3, fp=0)).ppv is None  # nothing called positive
    with pytest.raises(ValueError):
        operating(Counts(tp=1, fn=0, tn=1, fp=0), n_total=1)


def test_auc_by_hand_with_and_without_ties() -> None:
    curve = roc(POS + NEG, [1, 1, 1, 0, 0, 0, 0], n_bootstrap=200)
    assert curve is not None
    assert curve.auc == pytest.approx(9 / 12)  # 4 + 3 + 2 of 12 pairs ordered
    assert curve.auc_lower <= curve.auc <= curve.auc_upper
    assert (curve.n_positive, curve.n_negative) == (3, 4)
    # ties count one half: (0.5 + 1) * 2 / 4
    tied = roc([0.5, 0.5, 0.5, 0.1], [1, 1, 0, 0], n_bootstrap=50)
    assert tied is not None and tied.auc == pytest.approx(0.75)
    assert float(auc_mann_whitney(np.array([0.5, 0.5]), np.array([0.5, 0.1]))) == 0.75


def test_roc_needs_both_classes() -> None:
    assert roc([0.1, 0.2, 0.3], [0, 0, 0]) is None
    assert roc([0.1, 0.2], [1, 1]) is None
    with pytest.raises(ValueError):
        bootstrap_auc_ci([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="finite"):
        roc([0.1, float("nan")], [0, 1])


def test_bootstrap_interval_is_reproducible_and_narrows_with_more_slides() -> None:
    rng = np.random.default_rng(1)
    small = np.r_[rng.normal(1, 1, 15), rng.normal(0, 1, 15)], np.r_[np.ones(15), np.zeros(15)]
    big = np.r_[rng.normal(1, 1, 300), rng.normal(0, 1, 300)], np.r_[np.ones(300), np.zeros(300)]
    a = bootstrap_auc_ci(*small, n_bootstrap=400, seed=3)
    assert a == bootstrap_auc_ci(*small, n_bootstrap=400, seed=3)
    b = bootstrap_auc_ci(*big, n_bootstrap=400, seed=3)
    assert b[1] - b[0] < a[1] - a[0]
    assert b[0] < 0.76 < b[1]  # true AUC of N(1,1) vs N(0,1) is Phi(1/sqrt(2)) = 0.760


def test_operating_points_by_hand() -> None:
    pos = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1]
    neg = [0.55, 0.45, 0.05, 0.0]
    y = [1] * 10 + [0] * 4
    pts = operating_points(pos + neg, y, n_total=15, targets=(0.5, 0.95, 1.0))
    assert [p.threshold for p in pts] == [0.5, 0.1, 0.1]
    half = pts[0].figures
    assert half is not None and half.specificity is not None and half.sensitivity is not None
    assert (half.sensitivity.k, half.specificity.k, half.specificity.n) == (5, 3, 4)
    assert (half.set_aside.k, half.set_aside.n) == (8, 15)  # 5 FN + 3 TN of 15 slides
    full = pts[1].figures
    assert full is not None and full.specificity is not None
    assert full.specificity.k == 2 and full.sensitivity is not None and full.sensitivity.k == 10


def test_operating_points_without_positives() -> None:
    pts = operating_points([0.1, 0.2], [0, 0], targets=(0.95,))
    assert pts[0].threshold is None and pts[0].figures is None


def _delong_by_pairs(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Structural components written out pair by pair (independent of the midrank shortcut)."""

    def psi(x: float, z: float) -> float:
        return 1.0 if x > z else 0.5 if x == z else 0.0

    comps = []
    for s in (a, b):
        pos, neg = s[y == 1], s[y == 0]
        v10 = np.array([np.mean([psi(p, n) for n in neg]) for p in pos])
        v01 = np.array([np.mean([psi(p, n) for p in pos]) for n in neg])
        comps.append((v10, v01))
    m, n = int(y.sum()), int((1 - y).sum())
    d10 = comps[1][0] - comps[0][0]
    d01 = comps[1][1] - comps[0][1]
    var = d10.var(ddof=1) / m + d01.var(ddof=1) / n
    return float(comps[1][0].mean() - comps[0][0].mean()), float(np.sqrt(var))


def test_delong_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(12), np.zeros(15)].astype(int)
    a = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounded: ties inside and across classes
    b = np.round(rng.normal(y * 1.6, 1.0), 1)
    res = delong_paired(a, b, y)
    diff, se = _delong_by_pairs(a, b, y)
    assert res.difference == pytest.approx(diff)
    assert res.se == pytest.approx(se)
    assert res.auc_a == pytest.approx(float(auc_mann_whitney(a[y == 1], a[y == 0])))
    swapped = delong_paired(b, a, y)
    assert swapped.difference == pytest.approx(-res.difference)
    assert swapped.p_value == pytest.approx(res.p_value)


def test_delong_identical_runs_and_too_few_slides() -> None:
    s, y = np.array([0.9, 0.4, 0.6, 0.2, 0.1]), np.array([1, 1, 0, 0, 0])
    same = delong_paired(s, s, y)
    assert same.difference == 0.0 and same.p_value == 1.0
    with pytest.raises(ValueError, match="two positive"):
        delong_paired([0.9, 0.1, 0.2], [0.8, 0.1, 0.3], [1, 0, 0])


def test_sensitivity_by_category_keeps_order_and_unknowns() -> None:
    out = sensitivity_by_category(
        [True, False, True, True, False],
        ["HSIL", "LSIL", "LSIL", "", "ASC-US"],
        ("ASC-US", "LSIL", "ASC-H", "HSIL", "SCC", "AGC"),
    )
    assert list(out) == ["ASC-US", "LSIL", "HSIL", "unknown"]
    assert [(p.k, p.n) for p in out.values()] == [(0, 1), (1, 2), (1, 1), (1, 1)]


def test_first_hit_rank_uses_half_open_boxes() -> None:
    fields = [(0, 0, 100, 100), (200, 200, 300, 300), (100, 0, 200, 100)]
    assert first_hit_rank(fields, [(100, 50)]) == 3  # x1 is exclusive for field 1
    assert first_hit_rank(fields, [(250, 250), (10, 10)]) == 1
    assert first_hit_rank(fields, [(500, 500)]) is None
    assert first_hit_rank(fields, []) is None
    hits = field_hits([1, 3, None, 12], top_n=(1, 3, 10))
    assert hits is not None
    assert [(p.k, p.n) for p in hits.hit_at.values()] == [(1, 4), (2, 4), (2, 4)]
    assert hits.never_hit == 1
    assert field_hits([]) is None


def test_rates_are_the_shared_proportion_and_over_nothing_not_measured() -> None:
    assert rate(2, 3) == proportion(2, 3)  # cytoscreen.stats' one record
    assert rate(0, 0) is None and proportion(0, 0).if_measured() is None
    none = "not measurable (n = 0)"
    assert format_proportion(None) == format_proportion(proportion(0, 0)) == none
    assert format_proportion(rate(1, 4)).startswith("0.250 (1/4; ")
    op = operating(Counts(tp=0, fn=0, tn=0, fp=2))  # no positive, nothing set aside
    assert op.sensitivity is None and op.npv is None and op.set_aside.value == 0.0
