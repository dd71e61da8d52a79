"""The applicability check: a slide's patch scores against the calibration negatives'."""

from __future__ import annotations

import numpy as np
import pytest

from cytoscreen.slide.applicability import (
    MIN_PATCHES,
    check_scores,
    fit_score_reference,
    logit,
    score_stats,
)


def _slide(rng: np.random.Generator, shift: float = 0.0, n: int = 400) -> np.ndarray:
    """Patch probabilities of a normal background: log-odds ~ N(-4 + shift, 1)."""
    return 1.0 / (1.0 + np.exp(-(rng.normal(-4.0 + shift, 1.0, n))))


def test_score_stats_quantiles_of_the_log_odds() -> None:
    p = np.full(100, 0.5)
    p[:10] = np.nan  # unscored patches are left out
    st = score_stats(p)
    assert st is not None and st["q50"] == pytest.approx(0.0, abs=1e-9)
    assert score_stats(np.full(MIN_PATCHES - 1, 0.2)) is None
    cells = np.zeros(100, bool)
    cells[50:] = True
    q = np.r_[np.full(50, 0.01), np.full(50, 0.9)]
    assert score_stats(q, cells)["q50"] == pytest.approx(float(logit([0.9])[0]))  # type: ignore[index]
    assert logit([0.0, 1.0]).tolist() == pytest.approx([-9.21, 9.21], abs=0.01)  # clipped


def test_shifted_backgrounds_fail_the_check_both_ways() -> None:
    rng = np.random.default_rng(0)
    stats = [score_stats(_slide(rng, rng.normal(0, 0.2))) for _ in range(60)]
    ref = fit_score_reference([s for s in stats if s is not None], limit=4.0, source="test")
    assert ref.n_slides == 60 and set(ref.centre) == {"q50", "q90", "q99"}
    inside = [check_scores(score_stats(_slide(rng, rng.normal(0, 0.2))), ref) for _ in range(50)]
    assert sum(c.applicable for c in inside) >= 48  # in-distribution slides pass
    up = check_scores(score_stats(_slide(rng, 2.5)), ref)
    down = check_scores(score_stats(_slide(rng, -2.5)), ref)
    for check, word in ((up, "above"), (down, "below")):
        assert not check.applicable and check.shift > 4.0 and word in check.note
    few = check_scores(None, ref)
    assert few.applicable and not few.measured
    with pytest.raises(ValueError, match="at least 5"):
        fit_score_reference(stats[:3], limit=4.0, source="x")  # type: ignore[arg-type]


def test_a_background_scored_below_every_calibration_negative_is_unlike_them() -> None:
    """Within the z limit but below the lowest calibration negative on some quantile: the
    threshold was never measured on a background scored that low (the dangerous side)."""
    rng = np.random.default_rng(2)
    stats = [score_stats(_slide(rng, rng.normal(0, 0.2))) for _ in range(40)]
    ref = fit_score_reference([s for s in stats if s is not None], limit=4.0, source="test")
    centre = ref.centre["q99"]
    low = dict(ref.centre, q99=ref.minimum["q99"] - 0.05, n=400.0)
    check = check_scores(low, ref)
    assert abs(check.z["q99"]) <= 4.0  # the z limit alone would have let it through
    assert not check.applicable and "below every calibration negative's" in check.note
    high = dict(ref.centre, q99=ref.maximum["q99"] + 0.05, n=400.0)  # above the range: z rules
    assert check_scores(high, ref).applicable
    assert check_scores(dict(ref.centre, q99=centre, n=400.0), ref).applicable


def test_a_slide_smaller_than_every_calibration_slide_is_unlike_them() -> None:
    rng = np.random.default_rng(1)
    stats = [score_stats(_slide(rng, rng.normal(0, 0.2))) for _ in range(20)]
    usable = [s for s in stats if s is not None]
    ref = fit_score_reference(usable, limit=4.0, source="test", min_patches=300)
    assert ref.min_patches == 300 and usable[0]["n"] == 400
    small = check_scores(score_stats(_slide(rng, 0.0, n=150)), ref)
    assert not small.applicable and small.measured
    assert "150 scored patches, fewer than the 300 of the smallest calibration slide" in small.note
    assert check_scores(score_stats(_slide(rng, 0.0, n=300)), ref).applicable  # as small: fine
    # a reference without the size (older calibration files) judges by the quantiles alone
    unsized = fit_score_reference(usable, limit=4.0, source="test")
    assert check_scores(score_stats(_slide(rng, 0.0, n=150)), unsized).applicable


def test_a_negative_unlike_the_calibration_slides_goes_to_review() -> None:
    from cytoscreen.slide.applicability import ScoreCheck, never_negative_when_unlike
    from cytoscreen.types import Outcome, TriageDecision

    neg = TriageDecision(Outcome.NEGATIVE, 0.1, 0.5, ("score 0.1 < threshold 0.5",))
    unlike = ScoreCheck(5.2, {"q50": 5.2}, False, True, "the 50th percentile ... above")
    like = ScoreCheck(1.0, {"q50": 1.0}, True, True, "")
    out = never_negative_when_unlike(neg, unlike)
    assert out.outcome is Outcome.REVIEW
    assert out.reasons[0].startswith("review: scores unlike the calibration slides")
    assert out.reasons[1:] == neg.reasons
    assert never_negative_when_unlike(neg, like) is neg
    na = TriageDecision(Outcome.NOT_ASSESSABLE, None, 0.5, ("not assessable: no cells",))
    assert never_negative_when_unlike(na, unlike) is na  # never turned into anything milder
