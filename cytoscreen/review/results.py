"""A read-only view of a results folder written by ``cytoscreen screen``.

Only what a reviewer needs is kept: slide ids, display names, outcomes, scores, fields and
the names of the pictures ``screen`` wrote. Raw vendor metadata is never read from the slide
here, and nothing from result.json that could hold it is passed on.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytoscreen.errors import CytoscreenError
from cytoscreen.types import Outcome

# Ids written by ``screen`` are ``<sanitised stem>-<8 hex>``; anything else is refused so an id
# can be used in file names and URLs without escaping.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
OUTCOMES: tuple[str, ...] = (
    Outcome.REVIEW,
    Outcome.NOT_ASSESSABLE,
    Outcome.NEGATIVE,
    "scored",
    "failed",
)
OUTCOME_LABELS: dict[str, str] = {
    Outcome.REVIEW: "Review",
    Outcome.NOT_ASSESSABLE: "Not assessable",
    Outcome.NEGATIVE: "Negative",
    "scored": "Scored only",
    "failed": "Failed",
}


class NotAResultsFolder(CytoscreenError):
    default_hint = "give the folder written by `cytoscreen screen --out RESULTS`"


@dataclass(frozen=True)
class FieldView:
    rank: int
    score: float
    x0: int
    y0: int
    x1: int
    y1: int
    image: str | None  # path relative to the slide folder, None when not written

    @property
    def centre(self) -> tuple[int, int]:
        return ((self.x0 + self.x1) // 2, (self.y0 + self.y1) // 2)


@dataclass(frozen=True)
class SlideView:
    id: str
    name: str  # the slide's path relative to its input folder: shown to the reviewer
    path: str  # where the slide file was when screened (for the viewer)
    status: str
    outcome: str  # one of OUTCOMES
    score: float | None
    threshold: float | None
    model_id: str
    fields: tuple[FieldView, ...]
    has_thumbnail: bool
    has_heatmap: bool
    warnings: tuple[str, ...]
    error: str | None
    mpp: float | None
    target_mpp: float | None
    patch_size: int | None
    backend: str | None
    cache: str | None
    cellularity: int | None = None  # cells counted on the slide
    obscured: float | None = None  # estimated share of the cell area obscured (None: unknown)
    reasons: tuple[str, ...] = ()  # why the outcome (not assessable, scores unlike, ...)

    @property
    def key_reasons(self) -> tuple[str, ...]:
        """The reasons that change what happens to the slide (not the routine score line)."""
        return tuple(r for r in self.reasons if r.startswith(("not assessable", "review:")))

    def field(self, rank: int) -> FieldView | None:
        return next((f for f in self.fields if f.rank == rank), None)


@dataclass(frozen=True)
class ResultsView:
    root: Path
    slides: tuple[SlideView, ...]  # worst first, as in summary.csv
    model_id: str
    notices: tuple[str, ...] = ()  # run-wide caveats (the calibration's), shown once

    def slide(self, slide_id: str) -> SlideView | None:
        return next((s for s in self.slides if s.id == slide_id), None)

    def outcome_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for s in self.slides:
            counts[s.outcome] += 1
        return counts


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def outcome_of(result: dict[str, Any]) -> str:
    if result.get("status") != "ok":
        return "failed"
    outcome = result.get("outcome")
    return outcome if outcome in OUTCOMES else "scored"


def slide_view(result: dict[str, Any], slide_dir: Path) -> SlideView:
    """The reviewer's view of one result.json (pure apart from checking which images exist)."""
    fields = []
    for row in result.get("fields") or []:
        rank = int(row["rank"])
        image = f"fields/{rank}.png"
        fields.append(
            FieldView(
                rank=rank,
                score=float(row["score"]),
                x0=int(row["x0"]),
                y0=int(row["y0"]),
                x1=int(row["x1"]),
                y1=int(row["y1"]),
                image=image if (slide_dir / image).is_file() else None,
            )
        )
    info = result.get("slide") or {}
    return SlideView(
        id=str(result["id"]),
        name=str(result.get("relative_path") or result["id"]),
        path=str(result.get("path", "")),
        status=str(result.get("status", "")),
        outcome=outcome_of(result),
        score=_num(result.get("score")),
        threshold=_num(result.get("threshold")),
        model_id=str(result.get("model_id", "")),
        fields=tuple(sorted(fields, key=lambda f: f.rank)),
        has_thumbnail=(slide_dir / "thumbnail.png").is_file(),
        has_heatmap=(slide_dir / "heatmap.png").is_file(),
        warnings=tuple(w for w in map(str, result.get("warnings") or []) if not _run_wide(w)),
        error=str(result["error"]) if result.get("error") else None,
        mpp=_num(info.get("mpp")),
        target_mpp=_num(info.get("target_mpp")),
        patch_size=_int(info.get("patch_size")),
        backend=str(info["backend"]) if info.get("backend") else None,
        cache=str(result["cache"]) if result.get("cache") else None,
        cellularity=_int(result.get("cellularity")),
        obscured=_num(result.get("obscured")),
        reasons=tuple(map(str, result.get("reasons") or [])),
    )


RUN_WIDE_PREFIX = "calibration: "  # what decide() prefixes the calibration's own warnings with


def _run_wide(warning: str) -> bool:
    return warning.startswith(RUN_WIDE_PREFIX)


def _notices(results: list[dict[str, Any]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for r in results:
        for w in map(str, r.get("warnings") or []):
            if _run_wide(w):
                seen.setdefault(w[len(RUN_WIDE_PREFIX) :], None)
    return tuple(seen)


def _sort_key(s: SlideView) -> tuple[int, float, str]:
    order = {
        "failed": 0,
        Outcome.REVIEW: 1,
        Outcome.NOT_ASSESSABLE: 2,
        Outcome.NEGATIVE: 3,
        "scored": 4,
    }
    return (order[s.outcome], -(s.score if s.score is not None else -1.0), s.id)


def load_results(root: str | Path) -> ResultsView:
    """Read every ``slides/<id>/result.json`` under ``root``; ids that are not safe are skipped."""
    root = Path(root)
    slides_dir = root / "slides"
    if not slides_dir.is_dir():
        raise NotAResultsFolder("no slides/ folder here", slide=root)
    views, raw = [], []
    for path in sorted(slides_dir.glob("*/result.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being rewritten by a running screen, or damaged: left out
        if not isinstance(result, dict) or not SAFE_ID.match(str(result.get("id", ""))):
            continue
        if result["id"] != path.parent.name:
            continue
        views.append(slide_view(result, path.parent))
        raw.append(result)
    run: Any = {}
    with contextlib.suppress(OSError, ValueError):
        run = json.loads((root / "run.json").read_text(encoding="utf-8"))
    model_id = str((run.get("model") or {}).get("id", "")) if isinstance(run, dict) else ""
    if not model_id and views:
        model_id = views[0].model_id
    return ResultsView(root, tuple(sorted(views, key=_sort_key)), model_id, _notices(raw))
