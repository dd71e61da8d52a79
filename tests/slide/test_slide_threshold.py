"""Threshold calibration: exact intervals, the chosen threshold, the record and its file."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from scipy.stats import binomtest

import cytoscreen
from cytoscreen.scoring.card import BUNDLED_MODEL_DIR
from cytoscreen.slide import (
    BadCalibration,
    Calibration,
    LearnedRule,
    calibrate,
    choose_threshold,
    clopper_pearson,
    load_calibration,
    positives_needed,
    save_calibration,
)

WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def cal(scores: Sequence[float | None], labels: list[int], **kw: object) -> Calibration:
    args: dict[str, object] = {
        "model_id": "m1",
        "rule": "max",
        "data_source": "val.csv",
        "now": WHEN,
    }
    args.update(kw)
    return calibrate(scores, labels, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (0, 10, 0.0, 0.3085),
        (10, 10, 0.6915, 1.0),
        (5, 10, 0.1871, 0.8129),
        (1, 2, 0.0126, 0.9874),
    ],
)
def test_clopper_pearson_known_values(k: int, n: int, lo: float, hi: float) -> None:
    assert clopper_pearson(k, n) == pytest.approx((lo, hi), abs=1e-4)


def test_positives_needed_reaches_the_target_and_no_fewer_do() -> None:
    n = positives_needed(0.99)
    assert n == 368  # ln(0.025) / ln(0.99) = 367.04
    assert clopper_pearson(n, n)[0] >= 0.99
    assert clopper_pearson(n - 1, n - 1)[0] < 0.99
    assert positives_needed(0.9) == 36
    assert positives_needed(1.0) is None


def test_threshold_is_largest_meeting_target() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.75, 0.3, 0.1]
    labels = [1, 1, 1, 1, 0, 0, 0]
    assert choose_threshold(scores, labels, 0.75) == 0.7  # 3 of 4 positives
    assert choose_threshold(scores, labels, 0.76) == 0.6  # needs all 4
    assert choose_threshold(scores, labels, 0.25) == 0.9


def test_threshold_no_float_rounding_at_exact_target() -> None:
    scores = [i / 100 for i in range(1, 101)]  # 100 positives
    # 99 / 100 == 0.99 exactly meets the target; a ceil(0.99 * 100) would wrongly ask for 100
    assert choose_threshold(scores, [1] * 100, 0.99) == 0.02


def test_ties_at_threshold_count_as_detected() -> None:
    c = cal([0.8, 0.8, 0.5, 0.8], [1, 1, 1, 0], target_sensitivity=0.5)
    assert c.threshold == 0.8
    assert (c.tp, c.fn, c.tn, c.fp) == (2, 1, 0, 1)


def test_record_counts_and_intervals_by_hand() -> None:
    scores: list[float | None] = [0.9, 0.8, 0.4, 0.7, 0.2, 0.1, None, None]
    labels = [1, 1, 1, 0, 0, 0, 1, 0]
    c = cal(scores, labels, target_sensitivity=0.6)
    assert c.threshold == 0.8  # 2 of 3 scored positives
    assert (c.tp, c.fn, c.tn, c.fp) == (2, 1, 3, 0)
    assert (c.sensitivity.k, c.sensitivity.n) == (2, 3)
    assert c.specificity is not None and (c.specificity.k, c.specificity.n) == (3, 3)
    assert c.sensitivity.lower == pytest.approx(clopper_pearson(2, 3)[0])
    assert c.specificity.lower == pytest.approx(0.025 ** (1 / 3))
    assert (c.n_slides, c.n_unscorable, c.n_unscorable_positive) == (8, 2, 1)
    assert c.set_aside_share == pytest.approx(4 / 8)  # tn + fn of all slides
    assert c.package_version == cytoscreen.__version__ and c.created == WHEN
    assert any("2 slide(s) (1 positive) could not be scored" in w for w in c.warnings)


def test_warning_says_by_how_much_and_how_many_positives() -> None:
    c = cal([0.9] * 30 + [0.1] * 30, [1] * 30 + [0] * 30)
    assert c.sensitivity.value == 1.0
    lower = 0.025 ** (1 / 30)  # 0.8842
    assert c.sensitivity.lower == pytest.approx(lower)
    (w,) = c.warnings
    assert "with 30 positive slides" in w and f"{lower:.3f}" in w
    assert f"{0.99 - lower:.3f} below the 0.99 target" in w and "about 368 positive" in w


def test_no_warning_when_target_shown_with_confidence() -> None:
    c = cal([0.9] * 400 + [0.1] * 10, [1] * 400 + [0] * 10)
    assert c.warnings == ()
    assert c.sensitivity.lower == pytest.approx(binomtest(400, 400).proportion_ci().low)


def test_all_positive_set() -> None:
    c = cal([0.9, 0.6, 0.3], [1, 1, 1], target_sensitivity=0.6)
    assert c.threshold == 0.6 and c.specificity is None
    assert (c.tp, c.fn, c.tn, c.fp) == (2, 1, 0, 0)
    assert any("specificity is unknown" in w for w in c.warnings)


@pytest.mark.parametrize(
    ("scores", "labels"),
    [([0.9, 0.1], [0, 0]), ([None, 0.3], [1, 0]), ([], [])],
)
def test_no_positive_slides_cannot_be_calibrated(
    scores: list[float | None], labels: list[int]
) -> None:
    with pytest.raises(BadCalibration):
        choose_threshold(scores, labels)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="labels"):
        choose_threshold([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="0 .negative. or 1"):
        choose_threshold([0.1], [2])
    with pytest.raises(ValueError, match="finite"):
        choose_threshold([math.nan, 0.5], [1, 1])
    with pytest.raises(ValueError, match="target"):
        choose_threshold([0.5], [1], 0.0)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    rule = LearnedRule(
        mean=(0.0,) * 4, scale=(1.0,) * 4, coef=(1.0, 0.5, 0.0, 0.0), intercept=-1.0,
        top_k=10, patch_threshold=0.5, n_train=40,
    )  # fmt: skip
    c = cal([0.9, 0.5, 0.2, None], [1, 1, 0, 0], rule="learned(k=10,t=0.5)", learned=rule)
    path = save_calibration(c, tmp_path / "sub" / "calibration.json")
    assert load_calibration(path) == c
    assert json.loads(path.read_text())["threshold"] == 0.5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "invalid calibration record"),
        ("EXTRA", "unknown key"),
        ("BADCOUNT", "n_slides"),
        ("NORULE", "learned rule"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, text: str, match: str) -> None:
    good = json.loads(cal([0.9, 0.2], [1, 0]).model_dump_json())
    if text == "EXTRA":
        text = json.dumps({**good, "colour": "red"})
    elif text == "BADCOUNT":
        text = json.dumps({**good, "n_slides": 5})
    elif text == "NORULE":
        text = json.dumps({**good, "rule": "learned(k=10,t=0.5)"})
    path = tmp_path / "calibration.json"
    path.write_text(text)
    with pytest.raises(BadCalibration, match=match) as err:
        load_calibration(path)
    assert str(path) in str(err.value) and "recalibrate" in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadCalibration, match="not found"):
        load_calibration(tmp_path / "nope.json")


def test_the_record_says_how_its_scores_were_made(tmp_path: Path) -> None:
    made = {"runtime": "openvino", "precision": "fp32"}
    c = cal([0.2, 0.4, 0.6, 0.8], [0, 0, 1, 1], scoring=made)
    path = save_calibration(c, tmp_path / "calibration.json")
    assert load_calibration(path).scoring == made
    assert c.scoring_differs({**made, "device": "cpu", "runtime_note": "x"}) is None
    why = c.scoring_differs({"runtime": "torch", "precision": "bf16"})
    assert why is not None and "openvino fp32" in why and "torch bf16" in why
    assert "recalibrate" in why
    # PyTorch fp32 on the CPU is what the OpenVINO fp32 engine is checked against: one kind;
    # on a GPU (TF32 convolutions) or at another precision it is not
    assert c.scoring_differs({"runtime": "torch", "precision": "fp32", "device": "cpu"}) is None
    assert c.scoring_differs({"runtime": "torch", "precision": "fp32", "device": "cuda:0"})
    assert c.scoring_differs({"runtime": "openvino", "precision": "bf16", "device": "cpu"})
    torch_made = cal([0.2, 0.4, 0.6, 0.8], [0, 0, 1, 1], scoring={"runtime": "torch",
                                                                  "precision": "fp32"})  # fmt: skip
    # a PyTorch calibration does not record its device: OpenVINO fp32 is not taken for it
    assert torch_made.scoring_differs({"runtime": "openvino", "precision": "fp32", "device": "cpu"})
    # a file written before the field existed loads, and cannot say
    data = json.loads(path.read_text())
    del data["scoring"]
    path.write_text(json.dumps(data))
    old = load_calibration(path)
    assert old.scoring is None and old.scoring_differs({"runtime": "torch"}) is None


def test_threshold_holds_the_target_in_every_stratum(tmp_path: Path) -> None:
    # pooled, 9 of 10 positives at >= 0.6 meet a 0.9 target; but the 1-cell stratum's own
    # two positives score 0.65 and 0.3, so the threshold must come down to 0.3 for it
    scores = [0.9, 0.9, 0.8, 0.8, 0.7, 0.7, 0.6, 0.6, 0.65, 0.3, 0.2, 0.25, 0.1, 0.5]
    labels = [1] * 10 + [0] * 4
    strata = {"n_abnormal": ["4-10"] * 8 + ["1", "1"] + ["0"] * 4}
    pooled = cal(scores, labels, target_sensitivity=0.9)
    assert pooled.threshold == 0.6
    c = cal(scores, labels, target_sensitivity=0.9, strata=strata)
    assert c.threshold == 0.3
    one = c.strata["n_abnormal"]["1"]
    assert one.sensitivity is not None and (one.sensitivity.k, one.sensitivity.n) == (2, 2)
    assert one.specificity is None
    neg = c.strata["n_abnormal"]["0"]
    assert neg.sensitivity is None and neg.specificity is not None
    assert (neg.specificity.k, neg.specificity.n) == (3, 4)  # 0.5 >= 0.3 goes to review
    path = save_calibration(c, tmp_path / "c.json")
    assert load_calibration(path) == c


def test_negatives_outside_the_specificity_set_are_not_counted() -> None:
    scores = [0.9, 0.8, 0.1, 0.2, 0.95]
    labels = [1, 1, 0, 0, 0]
    c = cal(scores, labels, target_sensitivity=0.9, specificity_mask=[True] * 4 + [False])
    assert (c.tn, c.fp, c.n_slides) == (2, 0, 4)
    assert any("1 negative slide(s) not counted" in w for w in c.warnings)
    with pytest.raises(ValueError, match="one value per slide"):
        cal(scores, labels, specificity_mask=[True])


def test_figures_over_no_slide_are_null_in_the_record(tmp_path: Path) -> None:
    # n = 0 (cytoscreen.stats' "not measured") is written as null, as before; a 0-of-0 figure
    # in the file is refused (the file format has one spelling for it), as is a null sensitivity
    c = cal([0.9, 0.8], [1, 1], strata={"prep": ["a", "a"]})
    assert c.specificity is None and c.strata["prep"]["a"].specificity is None
    data = json.loads(save_calibration(c, tmp_path / "calibration.json").read_text())
    assert data["specificity"] is None and data["strata"]["prep"]["a"]["specificity"] is None
    unmeasured = {"k": 0, "n": 0, "value": None, "lower": None, "upper": None}
    for key, value in (("specificity", unmeasured), ("sensitivity", unmeasured)):
        (tmp_path / "bad.json").write_text(json.dumps({**data, key: value}))
        with pytest.raises(BadCalibration, match=key):
            load_calibration(tmp_path / "bad.json")


@pytest.mark.parametrize("name", ["calibration.json", "calibration.bf16.json"])
def test_the_shipped_calibration_loads_and_dumps_to_the_same_bytes(
    tmp_path: Path, name: str
) -> None:
    shipped = BUNDLED_MODEL_DIR / name
    c = load_calibration(shipped)
    assert c.sensitivity.n > 0 and c.model_dump(mode="json") == json.loads(shipped.read_text())
    assert save_calibration(c, tmp_path / "c.json").read_bytes() == shipped.read_bytes()
    # each says how its scores were made, and both were made on the same slides
    assert c.scoring == {"runtime": "openvino", "precision": name.split(".")[1].replace(
        "json", "fp32")}  # fmt: skip
    assert c.target_at == "lower_bound" and c.warnings == ()


def test_lower_bound_threshold_is_the_largest_whose_exact_bound_shows_the_target() -> None:
    from cytoscreen.slide.threshold import lower_bound_threshold

    n = 1000
    pos = [1.0 - i / n for i in range(n)]  # 1.0, 0.999, ..., 0.001: all distinct
    scores, labels = pos + [0.0005] * 50, [1] * n + [0] * 50
    t = lower_bound_threshold(scores, labels, 0.99)
    detected = sum(s >= t for s in pos)
    assert binomtest(detected, n).proportion_ci().low >= 0.99
    assert binomtest(detected - 1, n).proportion_ci().low < 0.99  # one fewer would not show it
    assert detected < n  # 1,000 positives can show 99% with a few misses
    # never above the point threshold, which allows more misses (990 of 1,000)
    assert t <= choose_threshold(scores, labels, 0.99)
    assert sum(s >= choose_threshold(scores, labels, 0.99) for s in pos) == 990


def test_lower_bound_threshold_detects_every_positive_when_the_set_cannot_show_the_target() -> None:
    from cytoscreen.slide.threshold import lower_bound_threshold

    # 368 positives with no miss reach a lower bound of 0.99; 400 with one miss do not
    pos = [0.2 + i / 1000 for i in range(400)]
    scores, labels = pos + [0.1] * 5, [1] * 400 + [0] * 5
    assert choose_threshold(scores, labels, 0.99) == pytest.approx(pos[4])  # 396/400 at 0.99
    assert lower_bound_threshold(scores, labels, 0.99) == pytest.approx(min(pos))
    small = [0.9, 0.8, 0.7]
    assert lower_bound_threshold(small + [0.1], [1, 1, 1, 0], 0.99) == 0.7


def test_the_record_says_how_the_target_was_held(tmp_path: Path) -> None:
    pos = [0.2 + i / 1000 for i in range(400)]
    scores, labels = pos + [0.1] * 5, [1] * 400 + [0] * 5
    point = cal(scores, labels)
    lower = calibrate(
        scores, labels, model_id="m", rule="max", data_source="t", now=WHEN, target_at="lower_bound"
    )
    assert point.target_at == "point" and (point.tp, point.fn) == (396, 4)
    assert lower.target_at == "lower_bound" and (lower.tp, lower.fn) == (400, 0)
    assert lower.sensitivity.lower is not None and lower.sensitivity.lower >= 0.99
    assert lower.warnings == () and point.warnings  # the point threshold's bound falls short
    assert load_calibration(save_calibration(lower, tmp_path / "c.json")) == lower
    with pytest.raises(ValueError, match="target_at"):
        calibrate(scores, labels, model_id="m", rule="max", data_source="t", target_at="mean")  # type: ignore[arg-type]
