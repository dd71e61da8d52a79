"""The run's summary table (summary.csv): one row per slide, quoted by the csv module."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from cytoscreen.slide_result import SlideResult
from cytoscreen.types import Outcome

SUMMARY_COLUMNS = (
    "id",
    "path",
    "status",
    "outcome",
    "score",
    "threshold",
    "cellularity",
    "obscured",
    "domain_shift",
    "score_shift",
    "n_patches",
    "top_field",
    "seconds",
    "reasons",
    "error",
)
# Worst first: what a cytologist must look at leads the table.
OUTCOME_ORDER: dict[str | None, int] = {
    Outcome.REVIEW: 0,
    Outcome.NOT_ASSESSABLE: 1,
    Outcome.NEGATIVE: 2,
    None: 3,
}


def _num(value: Any, digits: int = 6) -> str:
    return "" if value is None else f"{float(value):.{digits}g}"


def _share(value: Any) -> str:
    """A share 0-1 with three decimals; empty when unknown (not measured is not 0)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return f"{float(value):.3f}" if ok else ""


def summary_row(result: SlideResult) -> dict[str, str]:
    """The summary.csv row of one slide's record."""
    top = result.fields[0] if result.fields else None
    counts = result.counts or {}
    return {
        "id": result.id,
        "path": result.path or "",
        "status": result.status,
        "outcome": result.outcome.value if result.outcome is not None else "",
        "score": _num(result.score),
        "threshold": _num(result.threshold),
        "cellularity": str(result.cellularity) if result.cellularity is not None else "",
        "obscured": _share(result.obscured),
        "domain_shift": _num((result.domain or {}).get("shift"), 4),
        "score_shift": _num((result.applicability or {}).get("shift"), 4),
        "n_patches": str(counts.get("n_patches", "")),
        "top_field": f"{top['x0']};{top['y0']};{top['x1']};{top['y1']}" if top else "",
        "seconds": _num((result.timings or {}).get("total"), 4),
        "reasons": "; ".join(result.reasons),
        "error": result.error or "",
    }


def sort_key(result: SlideResult) -> tuple[int, int, float, str]:
    """Failed first, then review, not assessable, negative; higher scores first."""
    return (
        0 if result.failed else 1,
        OUTCOME_ORDER.get(result.outcome, 3),
        -float(result.score) if result.score is not None else 0.0,
        result.id,
    )


def summary_csv(results: Iterable[SlideResult]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in sorted(results, key=sort_key):
        writer.writerow(summary_row(r))
    return buf.getvalue()
