"""Match a labelled manifest to the slide results of a ``cytoscreen screen`` run.

Rows are matched by :func:`cytoscreen.slide_result.match_manifest` (resolved slide path, else
slide id), the rule ``calibrate`` uses too. Nothing is dropped silently: a row with no result
is ``missing``, a failed one ``failed``; both count as not assessable in the QA figures and
are listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytoscreen.batch import read_json_object
from cytoscreen.errors import BadCalibration, CytoscreenError
from cytoscreen.manifest import Manifest, ManifestRow
from cytoscreen.qa.fieldhits import Box, first_hit_rank
from cytoscreen.slide_result import SlideResult, load_results, match_manifest
from cytoscreen.types import Outcome


@dataclass(frozen=True)
class SlideOutcome:
    row: ManifestRow
    status: str  # ok | failed | missing
    score: float | None
    outcome: str | None  # negative | review | not_assessable | None (scores-only run)
    note: str  # why not assessable (error, reasons), "" otherwise
    first_hit: int | None  # rank of the first field showing a true abnormal cell
    n_abnormal_truth: int | None  # abnormal cells in the truth; None without truth

    def assessable(self) -> bool:
        return (
            self.status == "ok"
            and self.score is not None
            and self.outcome != Outcome.NOT_ASSESSABLE
        )


@dataclass(frozen=True)
class RunResults:
    results_dir: Path
    slides: tuple[SlideOutcome, ...]
    threshold: float | None  # the calibrated threshold the run decided with
    model_id: str | None
    rule: str | None


def _abnormal_cells(truth: Path) -> list[tuple[float, float]]:
    data = read_json_object(truth)
    if data is None or not isinstance(data.get("cells"), list):
        raise CytoscreenError(
            "unreadable cell truth (expected a JSON object with a 'cells' list)",
            subject=truth,
            hint="see data_manifests/README.md for the <slide>.cells.json format",
        )
    return [(float(c["x"]), float(c["y"])) for c in data["cells"] if c.get("abnormal")]


def _boxes(result: SlideResult) -> list[Box]:
    rows = sorted(result.fields, key=lambda f: int(f.get("rank", 0)))
    return [(int(f["x0"]), int(f["y0"]), int(f["x1"]), int(f["y1"])) for f in rows]


def _note(result: SlideResult) -> str:
    if result.failed:
        return result.error or "screening failed"
    if result.outcome == Outcome.NOT_ASSESSABLE:  # with or without a score: say why
        why = [r for r in result.reasons if r.startswith("not assessable")]
        return "; ".join(why) or "not assessable"
    if result.score is None:
        return "no score"
    return ""


def _one_value(values: set[Any], what: str, results_dir: Path) -> Any:
    if len(values) > 1:
        raise BadCalibration(
            f"the results mix {what}s {sorted(str(v) for v in values)}",
            subject=results_dir,
            hint="QA one run at a time: screen the whole set with one model and calibration",
        )
    return values.pop() if values else None


def collect_run(manifest: Manifest, results_dir: str | Path) -> RunResults:
    """Every manifest row with its result (or why it has none), and the run's threshold."""
    folder = Path(results_dir)
    matched = match_manifest(manifest.rows, load_results(folder))
    slides: list[SlideOutcome] = []
    used: list[SlideResult] = []
    for row, r in zip(manifest.rows, matched, strict=True):
        truth = _abnormal_cells(row.ground_truth) if row.ground_truth else None
        if r is None:
            slides.append(
                SlideOutcome(row, "missing", None, None, "not in these results", None, None)
            )
            continue
        used.append(r)
        ok = not r.failed
        first = first_hit_rank(_boxes(r), truth) if ok and truth else None
        slides.append(
            SlideOutcome(
                row=row,
                status="ok" if ok else "failed",
                score=r.score if ok else None,
                outcome=r.outcome if ok else None,
                note=_note(r),
                first_hit=first,
                n_abnormal_truth=len(truth) if truth is not None else None,
            )
        )
    ok_results = [r for r in used if not r.failed]
    threshold = _one_value(
        {r.threshold for r in ok_results if r.threshold is not None}, "threshold", folder
    )
    model_id = _one_value({r.model_id for r in used if r.model_id}, "model", folder)
    rule = _one_value({r.rule for r in ok_results if r.rule}, "rule", folder)
    return RunResults(folder, tuple(slides), threshold, model_id, rule)
