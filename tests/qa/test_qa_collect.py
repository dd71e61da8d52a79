from __future__ import annotations

from typing import Any

from cytoscreen.qa.collect import _note as _note_of
from cytoscreen.slide_result import SlideResult


def _note(result: dict[str, Any]) -> str:
    return _note_of(SlideResult.model_validate({"id": "s", **result}))


def test_why_a_slide_is_not_assessable_is_said_with_or_without_a_score() -> None:
    reasons = ["not assessable: no cell-bearing patch was found", "cellularity 0 cells"]
    blank = {"status": "ok", "outcome": "not_assessable", "score": None, "reasons": reasons}
    assert _note(blank) == "not assessable: no cell-bearing patch was found"
    shifted = {
        "status": "ok",
        "outcome": "not_assessable",
        "score": 0.2,
        "reasons": ["not assessable: unlike the training data (domain shift 16.2 > 6)"],
    }
    assert "domain shift" in _note(shifted)
    assert _note({"status": "ok", "outcome": None, "score": None}) == "no score"
    assert _note({"status": "failed", "error": "cannot open"}) == "cannot open"
    assert _note({"status": "ok", "outcome": "review", "score": 0.9}) == ""
