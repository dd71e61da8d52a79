"""The run's summary table (summary.csv): one row per slide, quoted by the csv module."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

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


def summary_row(result: Mapping[str, Any]) -> dict[str, str]:
    """The summary.csv row of one slide's result.json."""
    fields = result.get("fields") or []
    top = fields[0] if fields else None
    counts = result.get("counts") or {}
    return {
        "id": str(result.get("id", "")),
        "path": str(result.get("path", "")),
        "status": str(result.get("status", "")),
        "outcome": str(result.get("outcome") or ""),
        "score": _num(result.get("score")),
        "threshold": _num(result.get("threshold")),
        "cellularity": str(
            result.get("cellularity", "") if result.get("cellularity") is not None else ""
        ),
        "obscured": _share(result.get("obscured")),
        "domain_shift": _num((result.get("domain") or {}).get("shift"), 4),
        "score_shift": _num((result.get("applicability") or {}).get("shift"), 4),
        "n_patches": str(counts.get("n_patches", "")),
        "top_field": f"{top['x0']};{top['y0']};{top['x1']};{top['y1']}" if top else "",
        "seconds": _num((result.get("timings") or {}).get("total"), 4),
        "reasons": "; ".join(str(r) for r in result.get("reasons") or []),
        "error": str(result.get("error") or ""),
    }


def sort_key(result: Mapping[str, Any]) -> tuple[int, int, float, str]:
    """Failed first, then review, not assessable, negative; higher scores first."""
    failed = 0 if result.get("status") == "failed" else 1
    score = result.get("score")
    return (
        failed,
        OUTCOME_ORDER.get(result.get("outcome"), 3),
        -float(score) if score is not None else 0.0,
        str(result.get("id", "")),
    )


def summary_csv(results: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in sorted(results, key=sort_key):
        writer.writerow(summary_row(r))
    return buf.getvalue()
