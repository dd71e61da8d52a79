"""The applicability check end to end: a calibration whose score reference the slides are
unlike never lets them be called negative, and says why in result.json and summary.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cytoscreen.config import load_config
from cytoscreen.pipeline import screen
from cytoscreen.slide import load_calibration, save_calibration
from cytoscreen.slide.record import ScoreReference


def _reference(centre: float, limit: float = 4.0) -> ScoreReference:
    stats = ("q50", "q90", "q99")
    return ScoreReference(
        centre=dict.fromkeys(stats, centre), spread=dict.fromkeys(stats, 0.25),
        minimum=dict.fromkeys(stats, centre), maximum=dict.fromkeys(stats, centre),
        n_slides=10, limit=limit, source="test",
    )  # fmt: skip


@pytest.mark.parametrize("far", [False, True])
def test_slides_unlike_the_reference_are_never_negative(
    tmp_path: Path, slide_dir: Path, model_dir: Path, config_path: Path, far: bool
) -> None:
    base = load_calibration(model_dir / "calibration.json")
    # threshold 1.01: every assessable slide would be called negative without the check
    cal = base.model_copy(update={"threshold": 1.01})
    if far:  # log-odds of -9: the tiny model's scores are nowhere near
        cal = cal.model_copy(update={"applicability": _reference(-9.0)})
    path = save_calibration(cal, tmp_path / "calibration.json")
    report = screen(
        [slide_dir], tmp_path / "out", load_config(config_path), model_dir=model_dir,
        calibration_path=path,
    )  # fmt: skip
    decided = [r.to_json() for r in report.results if r.status == "ok" and r.score is not None]
    assert decided
    with (tmp_path / "out" / "summary.csv").open(newline="", encoding="utf-8") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    for r in decided:
        if r["outcome"] == "not_assessable":
            continue
        saved = json.loads((tmp_path / "out" / "slides" / r["id"] / "result.json").read_text())
        if far:
            assert r["outcome"] == "review", r["reasons"]
            assert r["reasons"][0].startswith("review: scores unlike the calibration slides")
            assert saved["applicability"]["applicable"] is False
            assert float(rows[r["id"]]["score_shift"]) > 4.0
        else:
            assert r["outcome"] == "negative" and saved["applicability"] is None
            assert rows[r["id"]]["score_shift"] == ""
