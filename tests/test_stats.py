"""The one record for "k of n with its interval" and its convention for n = 0."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from cytoscreen.stats import Proportion, clopper_pearson, proportion


def test_a_proportion_carries_its_counts_and_exact_interval() -> None:
    p = proportion(3, 4)
    assert (p.k, p.n, p.value) == (3, 4, 0.75) and p.measured
    assert (p.lower, p.upper) == pytest.approx(clopper_pearson(3, 4))
    assert p.if_measured() is p and p.method == "clopper-pearson"
    assert proportion(3, 4, confidence=0.5).lower > p.lower  # a narrower interval


def test_a_proportion_over_nothing_is_not_measured_never_nan() -> None:
    p = proportion(0, 0)  # no division by zero, no scipy error
    assert (p.k, p.n, p.value, p.lower, p.upper) == (0, 0, None, None, None)
    assert not p.measured and p.if_measured() is None
    assert p.model_dump() == {"k": 0, "n": 0, "value": None, "lower": None, "upper": None}
    assert "NaN" not in p.model_dump_json()
    with pytest.raises(ValueError, match="n = 0"):
        p.figures()
    assert proportion(1, 2).figures() == (0.5, *clopper_pearson(1, 2))


@pytest.mark.parametrize(("k", "n"), [(1, 0), (5, 4), (-1, 3), (0, -1)])
def test_impossible_counts_are_refused(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="proportion"):
        proportion(k, n)


@pytest.mark.parametrize(
    "fields",
    [
        {"k": 0, "n": 0, "value": 0.0, "lower": 0.0, "upper": 1.0},  # n = 0 with a value
        {"k": 0, "n": 0, "value": math.nan, "lower": None, "upper": None},
        {"k": 1, "n": 2, "value": None, "lower": None, "upper": None},  # n > 0 without one
        {"k": 1, "n": 2, "value": 0.5, "lower": 0.6, "upper": 0.9},  # value outside interval
        {"k": 3, "n": 2, "value": 1.0, "lower": 0.5, "upper": 1.0},
        {"k": 1, "n": 2, "value": 0.5, "lower": 0.1, "upper": 0.9, "method": "wald"},
    ],
)
def test_inconsistent_records_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Proportion.model_validate(fields)


def test_the_record_is_frozen() -> None:
    p = proportion(1, 2)
    with pytest.raises(ValidationError):
        p.k = 2  # type: ignore[misc]
