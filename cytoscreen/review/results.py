"""A read-only view of a results folder written by ``cytoscreen screen``.

Only what a reviewer needs is kept: slide ids, display names, outcomes, scores, fields and
the names of the pictures ``screen`` wrote. Raw vendor metadata is never read from the slide
here, and nothing from a slide's record that could hold it is passed on.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytoscreen.errors import NotAResultsFolder as NotAResultsFolder  # re-exported
from cytoscreen.slide_result import FAILED, SCORED, SlideResult, load_result_files
from cytoscreen.types import Outcome

# Ids written by ``screen`` are ``<sanitised stem>-<8 hex>``; anything else is refused so an id
# can be used in file names and URLs without escaping.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
OUTCOMES: tuple[str, ...] = (
    Outcome.REVIEW,
    Outcome.NOT_ASSESSABLE,
    Outcome.NEGATIVE,
    SCORED,
    FAILED,
)
OUTCOME_LABELS: dict[str, str] = {
    Outcome.REVIEW: "Review",
    Outcome.NOT_ASSESSABLE: "Not assessable",
    Outcome.NEGATIVE: "Negative",
    SCORED: "Scored only",
    FAILED: "Failed",
}


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


def slide_view(result: SlideResult, slide_dir: Path) -> SlideView:
    """The reviewer's view of one slide's record (pure apart from checking which images
    exist)."""
    fields = []
    for row in result.fields:
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
    info = result.slide or {}
    return SlideView(
        id=result.id,
        name=result.relative_path or result.id,
        path=result.path or "",
        status=result.status,
        outcome=result.state,
        score=result.score,
        threshold=result.threshold,
        model_id=result.model_id or "",
        fields=tuple(sorted(fields, key=lambda f: f.rank)),
        has_thumbnail=(slide_dir / "thumbnail.png").is_file(),
        has_heatmap=(slide_dir / "heatmap.png").is_file(),
        warnings=tuple(w for w in result.warnings if not _run_wide(w)),
        error=result.error or None,
        mpp=_num(info.get("mpp")),
        target_mpp=_num(info.get("target_mpp")),
        patch_size=_int(info.get("patch_size")),
        backend=str(info["backend"]) if info.get("backend") else None,
        cache=result.cache or None,
        cellularity=result.cellularity,
        obscured=result.obscured,
        reasons=result.reasons,
    )


RUN_WIDE_PREFIX = "calibration: "  # what decide() prefixes the calibration's own warnings with


def _run_wide(warning: str) -> bool:
    return warning.startswith(RUN_WIDE_PREFIX)


def _notices(results: list[SlideResult]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for r in results:
        for w in r.warnings:
            if _run_wide(w):
                seen.setdefault(w[len(RUN_WIDE_PREFIX) :], None)
    return tuple(seen)


def _sort_key(s: SlideView) -> tuple[int, float, str]:
    order = {
        FAILED: 0,
        Outcome.REVIEW: 1,
        Outcome.NOT_ASSESSABLE: 2,
        Outcome.NEGATIVE: 3,
        SCORED: 4,
    }
    return (order[s.outcome], -(s.score if s.score is not None else -1.0), s.id)


def load_results(root: str | Path) -> ResultsView:
    """Read every slide's record under ``root`` (``cytoscreen.slide_result``); a record whose
    id is not safe, or not its folder's name, is left out. Raises NotAResultsFolder, or
    UnreadableResult naming a record that cannot be read."""
    root = Path(root)
    views, raw = [], []
    for slide_dir, result in load_result_files(root):
        if not SAFE_ID.match(result.id) or result.id != slide_dir.name:
            continue
        views.append(slide_view(result, slide_dir))
        raw.append(result)
    run: Any = {}
    with contextlib.suppress(OSError, ValueError):
        run = json.loads((root / "run.json").read_text(encoding="utf-8"))
    model_id = str((run.get("model") or {}).get("id", "")) if isinstance(run, dict) else ""
    if not model_id and views:
        model_id = views[0].model_id
    return ResultsView(root, tuple(sorted(views, key=_sort_key)), model_id, _notices(raw))
