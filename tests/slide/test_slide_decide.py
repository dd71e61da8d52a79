"""Triage decisions: each branch, ties at the threshold, reasons, and the never-NEGATIVE rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cytoscreen.slide import Adequacy, BadCalibration, TriageSettings, calibrate, decide
from cytoscreen.types import Outcome, SlideScore, SuspiciousField

# Threshold 0.5: the larger threshold detecting the one positive (0.5 > 0.2 negative).
CAL = calibrate(
    [0.5, 0.2],
    [1, 0],
    model_id="m",
    rule="max",
    data_source="t",
    now=datetime(2025, 1, 1, tzinfo=UTC),
)
FIELD = SuspiciousField(rank=1, score=0.91, x0=0, y0=0, x1=224, y1=448, patch_indices=(3, 7))
OK = SlideScore(
    score=0.3, rule="max", n_patches=1000, n_scored=1000, n_unreadable=0,
    cellularity=8000, fields=(FIELD,),
)  # fmt: skip


def test_threshold_is_from_calibration() -> None:
    assert CAL.threshold == 0.5


@pytest.mark.parametrize(
    ("score", "outcome"),
    [
        (0.3, Outcome.NEGATIVE),
        (0.4999, Outcome.NEGATIVE),
        (0.5, Outcome.REVIEW),
        (0.9, Outcome.REVIEW),
    ],
)
def test_score_against_threshold(score: float, outcome: Outcome) -> None:
    d = decide(replace(OK, score=score), CAL)
    assert d.outcome is outcome and d.threshold == 0.5 and d.score == score
    sign = ">=" if outcome is Outcome.REVIEW else "<"
    assert d.reasons[0] == f"score {score:.4g} {sign} threshold 0.5 (max)"


def test_reasons_name_cellularity_patches_and_fields() -> None:
    d = decide(OK, CAL)
    assert "cellularity 8,000 cells" in d.reasons
    assert "scored 1,000 of 1,000 patches (0 unreadable)" in d.reasons
    assert "field 1: p=0.910 at x 0-224, y 0-448 (2 patches)" in d.reasons


def test_calibration_warnings_are_carried() -> None:
    assert any(
        w.startswith("calibration: with 1 positive slides") for w in decide(OK, CAL).warnings
    )


@pytest.mark.parametrize(
    ("score", "adequacy", "change", "reason"),
    [
        (None, Adequacy(), {"n_scored": 0, "n_unreadable": 1000}, "no patch could be scored"),
        (None, Adequacy(), {"n_patches": 0, "n_scored": 0}, "no cell-bearing patch"),
        (0.9, Adequacy(), {"n_scored": 949, "n_unreadable": 51}, "5.1% of patches unreadable"),
        (0.9, Adequacy(resolution_ok=False, resolution_note="2 um/px"), {}, "wrong resolution: 2"),
        (0.9, Adequacy(off_domain=True), {}, "unlike the training data"),
        (0.1, Adequacy(domain_shift=3.5), {}, "domain shift 3.5 > 2"),
        (0.1, Adequacy(), {"cellularity": 4999}, "too few cells: 4,999 cells, below the minimum"),
    ],
)
def test_not_assessable_branches(
    score: float | None, adequacy: Adequacy, change: dict[str, Any], reason: str
) -> None:
    s = replace(OK, score=score, **change)
    d = decide(s, CAL, adequacy, TriageSettings(max_domain_shift=2.0))
    assert d.outcome is Outcome.NOT_ASSESSABLE
    assert any(r.startswith("not assessable: ") and reason in r for r in d.reasons), d.reasons


def test_limits_are_inclusive_of_the_acceptable_side() -> None:
    at_limit = replace(OK, n_scored=950, n_unreadable=50, cellularity=5000)  # 5.0% and 5,000
    assert decide(at_limit, CAL).outcome is Outcome.NEGATIVE
    shift = Adequacy(domain_shift=2.0)
    assert decide(OK, CAL, shift, TriageSettings(max_domain_shift=2.0)).outcome is Outcome.NEGATIVE
    unchecked = Adequacy(domain_shift=1e9)  # max_domain_shift None: not checked
    no_limit = TriageSettings(max_domain_shift=None)
    assert decide(OK, CAL, unchecked, no_limit).outcome is Outcome.NEGATIVE
    assert decide(OK, CAL, unchecked).outcome is Outcome.NOT_ASSESSABLE  # the default limits it


def test_scanty_but_abnormal_goes_to_review_by_default() -> None:
    s = replace(OK, score=0.8, cellularity=1200)
    d = decide(s, CAL)
    assert d.outcome is Outcome.REVIEW
    assert any("scanty slide (1,200 cells" in w for w in d.warnings)
    strict = decide(s, CAL, settings=TriageSettings(abnormal_overrides_cellularity=False))
    assert strict.outcome is Outcome.NOT_ASSESSABLE


def test_min_cellularity_is_configurable() -> None:
    s = replace(OK, cellularity=100)
    assert decide(s, CAL).outcome is Outcome.NOT_ASSESSABLE
    assert decide(s, CAL, settings=TriageSettings(min_cellularity=50)).outcome is Outcome.NEGATIVE


@pytest.mark.parametrize(
    ("preparation", "cells", "outcome"),
    [
        ("liquid", 5000, Outcome.NEGATIVE),
        ("liquid", 4999, Outcome.NOT_ASSESSABLE),
        ("conventional", 7999, Outcome.NOT_ASSESSABLE),
        ("conventional", 8000, Outcome.NEGATIVE),
    ],
)
def test_the_minimum_follows_the_preparation_type(
    preparation: str, cells: int, outcome: Outcome
) -> None:
    settings = TriageSettings(preparation=preparation)  # type: ignore[arg-type]
    d = decide(replace(OK, cellularity=cells), CAL, settings=settings)
    assert d.outcome is outcome
    if outcome is Outcome.NOT_ASSESSABLE:
        name = "liquid-based preparation" if preparation == "liquid" else "conventional smear"
        minimum = 5000 if preparation == "liquid" else 8000
        expected = f"too few cells: {cells:,} cells, below the minimum of {minimum:,} for a {name}"
        assert any(expected in r for r in d.reasons), d.reasons


def test_preparation_minimums_and_the_override() -> None:
    assert TriageSettings().min_cellularity == 5000
    assert TriageSettings(preparation="conventional").min_cellularity == 8000
    custom = TriageSettings(preparation="conventional", min_cells_conventional=7000)
    assert custom.min_cellularity == 7000
    # an explicit minimum overrides both types; null (YAML) means the preparation's own
    assert TriageSettings(preparation="conventional", min_cellularity=50).min_cellularity == 50
    unset = TriageSettings.model_validate({"preparation": "conventional", "min_cellularity": None})
    assert unset.min_cellularity == 8000


def test_abnormal_overrides_cellularity_on_a_conventional_smear() -> None:
    settings = TriageSettings(preparation="conventional")
    s = replace(OK, score=0.8, cellularity=6000)  # adequate for liquid, scanty for a smear
    assert decide(s, CAL, settings=settings).outcome is Outcome.REVIEW
    strict = TriageSettings(preparation="conventional", abnormal_overrides_cellularity=False)
    assert decide(s, CAL, settings=strict).outcome is Outcome.NOT_ASSESSABLE


@pytest.mark.parametrize(
    ("cells", "near", "outcome"),
    [
        (5120, True, Outcome.NEGATIVE),  # above the minimum, within 8% of it
        (5430, True, Outcome.NEGATIVE),  # |5430 - 5000| = 430 <= 0.08 * 5430 = 434.4
        (5440, False, Outcome.NEGATIVE),  # 440 > 435.2
        (4700, True, Outcome.NOT_ASSESSABLE),  # below, but within the count's error
        (4620, False, Outcome.NOT_ASSESSABLE),  # 380 > 369.6
    ],
)
def test_a_count_within_its_error_of_the_minimum_says_so(
    cells: int, near: bool, outcome: Outcome
) -> None:
    settings = TriageSettings(cellularity_error=0.08)
    d = decide(replace(OK, cellularity=cells), CAL, settings=settings)
    assert d.outcome is outcome
    note = (
        f"cellularity {cells:,} cells, within the count's expected error (±8%) of the 5,000 "
        "minimum for a liquid-based preparation"
    )
    assert (note in d.reasons) is near, d.reasons
    assert (f"cellularity {cells:,} cells" in d.reasons) is not near


OBSCURED_82 = (
    "not assessable: cells mostly obscured: 82% of the cell-bearing area under blood or thick "
    "overlap (estimated; limit 75%)"
)


def test_mostly_obscured_slide_is_not_assessable_with_the_reason() -> None:
    d = decide(replace(OK, obscured=0.82), CAL)
    assert d.outcome is Outcome.NOT_ASSESSABLE
    assert d.reasons[0] == OBSCURED_82
    # more than the limit: at it, the slide is assessable and says how obscured it is
    at_limit = decide(replace(OK, obscured=0.75), CAL)
    assert at_limit.outcome is Outcome.NEGATIVE
    assert (
        "obscured: 75% of the cell-bearing area under blood or thick overlap "
        "(estimated; limit 75%)" in at_limit.reasons
    )
    lower = decide(replace(OK, obscured=0.82), CAL, settings=TriageSettings(max_obscured_share=0.9))
    assert lower.outcome is Outcome.NEGATIVE


def test_obscured_share_is_only_recorded_without_a_limit() -> None:
    d = decide(replace(OK, obscured=0.99), CAL, settings=TriageSettings(max_obscured_share=None))
    assert d.outcome is Outcome.NEGATIVE
    assert (
        "obscured: 99% of the cell-bearing area under blood or thick overlap (estimated)"
        in d.reasons
    )


def test_unknown_obscured_share_applies_no_rule() -> None:
    d = decide(replace(OK, obscured=None), CAL)  # a patch cache made before the estimate
    assert d.outcome is Outcome.NEGATIVE
    assert not any("obscured" in r for r in d.reasons + d.warnings)


def test_obscured_but_abnormal_goes_to_review_like_a_scanty_slide() -> None:
    s = replace(OK, score=0.8, obscured=0.9)
    d = decide(s, CAL)
    assert d.outcome is Outcome.REVIEW
    assert not any(r.startswith("not assessable") for r in d.reasons)
    assert any(
        w.startswith("slide with cells mostly obscured (90% of the cell-bearing area")
        and w.endswith("reviewed because it scores at/above threshold")
        for w in d.warnings
    ), d.warnings
    strict = decide(s, CAL, settings=TriageSettings(abnormal_overrides_cellularity=False))
    assert strict.outcome is Outcome.NOT_ASSESSABLE
    assert any(r.startswith("not assessable: cells mostly obscured: 90%") for r in strict.reasons)


def test_scanty_and_obscured_are_both_named() -> None:
    d = decide(replace(OK, cellularity=1200, obscured=0.82), CAL)
    assert d.outcome is Outcome.NOT_ASSESSABLE
    assert d.reasons[:2] == (
        "not assessable: too few cells: 1,200 cells, below the minimum of 5,000 for a "
        "liquid-based preparation",
        OBSCURED_82,
    )
    reviewed = decide(replace(OK, score=0.8, cellularity=1200, obscured=0.82), CAL)
    assert reviewed.outcome is Outcome.REVIEW
    notes = [
        w for w in reviewed.warnings if w.endswith("reviewed because it scores at/above threshold")
    ]
    assert [w.split(" (")[0] for w in notes] == ["scanty slide", "slide with cells mostly obscured"]


def test_all_problems_are_listed() -> None:
    s = replace(OK, score=None, n_scored=0, n_unreadable=1000, cellularity=0)
    d = decide(s, CAL, Adequacy(resolution_ok=False))
    listed = [r for r in d.reasons if r.startswith("not assessable")]
    assert len(listed) == 4  # no score, unreadable share, resolution, too few cells


def test_rule_mismatch_is_an_error() -> None:
    with pytest.raises(BadCalibration, match="top_k_mean"):
        decide(replace(OK, rule="top_k_mean(k=10)"), CAL)


@settings(max_examples=300, deadline=None)
@given(
    score=st.one_of(st.none(), st.floats(0.0, 1.0)),
    n_unreadable=st.integers(0, 100),
    cellularity=st.integers(0, 10_000),
    resolution_ok=st.booleans(),
    off_domain=st.booleans(),
    obscured=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_negative_only_when_assessable_and_below(
    score: float | None,
    n_unreadable: int,
    cellularity: int,
    resolution_ok: bool,
    off_domain: bool,
    obscured: float | None,
) -> None:
    s = replace(OK, score=score, n_patches=100, n_scored=100 - n_unreadable,
                n_unreadable=n_unreadable, cellularity=cellularity, obscured=obscured)  # fmt: skip
    d = decide(s, CAL, Adequacy(resolution_ok=resolution_ok, off_domain=off_domain))
    assessable = score is not None and n_unreadable <= 5 and resolution_ok and not off_domain
    if d.outcome is Outcome.NEGATIVE:
        assert assessable and score is not None and score < 0.5 and cellularity >= 5000
        assert obscured is None or obscured <= 0.75
    if not assessable:
        assert d.outcome is Outcome.NOT_ASSESSABLE
    if assessable and score is not None and score >= 0.5:
        assert d.outcome is Outcome.REVIEW
    assert d.reasons


def test_never_negative_sends_only_a_negative_to_review_and_says_why_first() -> None:
    from cytoscreen.slide.decide import never_negative
    from cytoscreen.types import TriageDecision

    neg = TriageDecision(Outcome.NEGATIVE, 0.1, 0.5, ("score 0.1 < threshold 0.5",))
    out = never_negative(neg, "review: why")
    assert out.outcome is Outcome.REVIEW and out.reasons == ("review: why", *neg.reasons)
    assert out.score == neg.score and out.threshold == neg.threshold
    assert never_negative(neg, None) is neg
    for other in (Outcome.REVIEW, Outcome.NOT_ASSESSABLE):
        kept = TriageDecision(other, 0.9, 0.5, ("x",))
        assert never_negative(kept, "review: why") is kept  # never turned into anything milder
