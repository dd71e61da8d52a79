from __future__ import annotations

import csv
import io
from typing import Any

from cytoscreen.outputs.summary import SUMMARY_COLUMNS, summary_csv
from cytoscreen.outputs.summary import summary_row as _summary_row
from cytoscreen.slide_result import SlideResult


def summary_row(result: dict[str, Any]) -> dict[str, str]:
    """The row of the record read from ``result`` (a result.json's object)."""
    return _summary_row(SlideResult.model_validate(result))


def test_summary_row_carries_the_domain_shift_and_the_reasons() -> None:
    result = {
        "id": "s1",
        "status": "ok",
        "outcome": "not_assessable",
        "score": 0.25,
        "threshold": 0.7,
        "cellularity": 8000,
        "domain": {"shift": 16.2345, "checked": True},
        "reasons": ["unlike the training data (domain shift 16.23 > 6)", "cellularity 8,000"],
        "counts": {"n_patches": 40},
    }
    row = summary_row(result)
    assert tuple(row) == SUMMARY_COLUMNS
    assert row["domain_shift"] == "16.23"
    assert row["reasons"] == "unlike the training data (domain shift 16.23 > 6); cellularity 8,000"
    # a failed slide has neither: the cells are empty, not "None"
    failed = summary_row({"id": "s2", "status": "failed", "error": "cannot open"})
    assert failed["domain_shift"] == "" and failed["reasons"] == ""


def test_summary_csv_quotes_reasons_with_commas_and_sorts_worst_first() -> None:
    rows = [
        {"id": "neg", "status": "ok", "outcome": "negative", "score": 0.1, "reasons": ["a, b"]},
        {"id": "rev", "status": "ok", "outcome": "review", "score": 0.9, "reasons": ["c"]},
    ]
    records = [SlideResult.model_validate(r) for r in rows]
    parsed = list(csv.DictReader(io.StringIO(summary_csv(records))))
    assert [r["id"] for r in parsed] == ["rev", "neg"]
    assert parsed[1]["reasons"] == "a, b"


def test_summary_row_carries_the_score_shift() -> None:
    row = summary_row({"id": "s", "status": "ok", "applicability": {"shift": 5.123456}})
    assert row["score_shift"] == "5.123"
    assert summary_row({"id": "s", "status": "ok", "applicability": None})["score_shift"] == ""


def test_summary_row_carries_the_obscured_share_and_unknown_stays_empty() -> None:
    row = summary_row({"id": "s", "status": "ok", "obscured": 0.82349})
    assert row["obscured"] == "0.823"
    assert SUMMARY_COLUMNS.index("obscured") == SUMMARY_COLUMNS.index("cellularity") + 1
    assert summary_row({"id": "s", "status": "ok", "obscured": 0.0})["obscured"] == "0.000"
    # a slide tiled before the estimate existed: unknown, not 0
    assert summary_row({"id": "s", "status": "ok", "obscured": None})["obscured"] == ""
    assert summary_row({"id": "s", "status": "ok"})["obscured"] == ""
