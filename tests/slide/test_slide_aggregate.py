"""Aggregation rules: hand-computed values, NaN handling, numerical safety, the learned rule."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from cytoscreen.slide import (
    AggregationSettings,
    LearnedRule,
    aggregate,
    fit_learned_rule,
    rule_label,
    score_slide,
    slide_features,
)

NAN = float("nan")
RULES = ("max", "top_k_mean", "noisy_or", "count_over")


def agg(prob: list[float], rule: str, **kw: object) -> float | None:
    return aggregate(np.array(prob, dtype=np.float32), AggregationSettings(rule=rule, **kw))


@pytest.mark.parametrize(
    ("rule", "kw", "expected"),
    [
        ("max", {}, 0.9),
        ("top_k_mean", {"top_k": 2}, 0.7),  # (0.9 + 0.5) / 2
        ("top_k_mean", {"top_k": 10}, 0.5),  # fewer than k: mean of the 3 scored
        ("noisy_or", {}, 0.955),  # 1 - 0.1 * 0.9 * 0.5
        ("noisy_or", {"noisy_or_top_k": 1}, 0.9),
        ("count_over", {"patch_threshold": 0.5}, 2.0),  # 0.9 and 0.5 (>= counts)
        ("count_over", {"patch_threshold": 0.95}, 0.0),
    ],
)
def test_rules_hand_computed(rule: str, kw: dict[str, object], expected: float) -> None:
    assert agg([0.1, 0.9, NAN, 0.5], rule, **kw) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("prob", [[], [NAN], [NAN, NAN, NAN]])
def test_nothing_scored_gives_none_not_zero(rule: str, prob: list[float]) -> None:
    assert agg(prob, rule) is None


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("max", 0.3), ("top_k_mean", 0.3), ("noisy_or", 0.3), ("count_over", 0.0)],
)
def test_one_patch(rule: str, expected: float) -> None:
    assert agg([0.3], rule) == pytest.approx(expected)


def test_noisy_or_is_numerically_safe() -> None:
    many = np.full(10_000, 1e-5)
    expected = 1.0 - (1.0 - 1e-5) ** 10_000  # ~0.0952
    assert aggregate(many, AggregationSettings(rule="noisy_or")) == pytest.approx(
        expected, rel=1e-9
    )
    tiny = np.full(5, 1e-20)  # a naive 1 - prod(1 - p) rounds this to 0
    assert aggregate(tiny, AggregationSettings(rule="noisy_or")) == pytest.approx(5e-20, rel=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        certain = aggregate(np.r_[np.full(5000, 0.2), 1.0], AggregationSettings(rule="noisy_or"))
    assert certain == 1.0


@pytest.mark.parametrize("bad", [[1.5], [-0.1], [math.inf]])
def test_out_of_range_probabilities_are_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        agg(bad, "max")


@pytest.mark.parametrize("rule", RULES)
def test_order_does_not_matter(rule: str) -> None:
    rng = np.random.default_rng(0)
    prob = rng.random(500)
    prob[rng.integers(0, 500, 50)] = np.nan
    settings = AggregationSettings(rule=rule, top_k=7)
    first = aggregate(prob, settings)
    assert first is not None
    assert aggregate(rng.permutation(prob), settings) == pytest.approx(first, rel=1e-12)


def test_rule_labels() -> None:
    assert rule_label(AggregationSettings(rule="max")) == "max"
    assert rule_label(AggregationSettings(top_k=5)) == "top_k_mean(k=5)"
    assert rule_label(AggregationSettings(rule="noisy_or")) == "noisy_or(k=all)"
    assert rule_label(AggregationSettings(rule="count_over", patch_threshold=0.7)) == (
        "count_over(t=0.7)"
    )


def test_settings_refuse_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError):
        AggregationSettings(rule="mean")
    with pytest.raises(ValueError):
        AggregationSettings(top_k=0)
    with pytest.raises(ValueError):
        AggregationSettings.model_validate({"rule": "max", "topk": 3})


def _rule(coef: tuple[float, float, float, float], intercept: float = 0.0) -> LearnedRule:
    return LearnedRule(
        mean=(0.0,) * 4, scale=(1.0,) * 4, coef=coef, intercept=intercept,
        top_k=10, patch_threshold=0.5, n_train=2,
    )  # fmt: skip


def test_learned_rule_hand_computed() -> None:
    settings = AggregationSettings(rule="learned")
    on_max = _rule((1.0, 0.0, 0.0, 0.0))
    # sigmoid(logit(p_max)) gives p_max back
    assert aggregate([0.8, 0.1, NAN], settings, learned=on_max) == pytest.approx(0.8)
    # features of [0.8, 0.6, 0.1]: top-3 mean 0.5 -> logit 0; 2 over 0.5 -> log(3), share 2/3
    feats = slide_features(np.array([0.8, 0.6, 0.1]), 10, 0.5)
    assert feats == pytest.approx([math.log(4), 0.0, math.log(3), 2 / 3])
    on_count = _rule((0.0, 0.0, 1.0, 0.0), intercept=-math.log(3))
    assert aggregate([0.8, 0.6, 0.1], settings, learned=on_count) == pytest.approx(0.5)
    assert aggregate([NAN], settings, learned=on_max) is None
    with pytest.raises(ValueError, match="calibration.json"):
        aggregate([0.5], settings)
    with pytest.raises(ValueError, match="top_k=10"):
        aggregate([0.5], AggregationSettings(rule="learned", top_k=3), learned=on_max)


def test_fit_learned_rule_separates_slides() -> None:
    rng = np.random.default_rng(1)
    neg = [rng.beta(1, 20, 400) for _ in range(20)]
    pos = [np.r_[rng.beta(1, 20, 390), rng.beta(8, 2, 10)] for _ in range(20)]
    settings = AggregationSettings(rule="learned")
    rule = fit_learned_rule(neg + pos, [0] * 20 + [1] * 20, settings)
    s_neg = [aggregate(p, settings, learned=rule) for p in neg]
    s_pos = [aggregate(p, settings, learned=rule) for p in pos]
    assert max(s for s in s_neg if s is not None) < min(s for s in s_pos if s is not None)
    again = fit_learned_rule(neg + pos, [0] * 20 + [1] * 20, settings)
    assert again == rule  # deterministic
    with pytest.raises(ValueError, match="both"):
        fit_learned_rule(neg, [0] * 20, settings)


def test_score_slide_counts() -> None:
    prob = np.array([0.9, NAN, 0.2, 0.8], dtype=np.float32)
    coords = np.array([[0, 0], [100, 0], [300, 0], [100, 100]])
    s = score_slide(prob, coords, 100.0, cellularity=6000, settings=AggregationSettings(rule="max"))
    assert (s.n_patches, s.n_scored, s.n_unreadable, s.cellularity) == (4, 3, 1, 6000)
    assert s.score == pytest.approx(0.9) and s.rule == "max"
    assert [f.patch_indices for f in s.fields] == [(0, 3)]  # corner-touching patches merge
