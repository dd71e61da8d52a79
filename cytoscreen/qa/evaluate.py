"""From matched slides to every QA figure (no file I/O): the run at its calibrated threshold,
across all thresholds (ROC, operating points), by Bethesda category and site, and fields."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cytoscreen.manifest import BETHESDA, Manifest
from cytoscreen.qa.collect import RunResults, SlideOutcome
from cytoscreen.qa.fieldhits import FieldHits, field_hits
from cytoscreen.qa.metrics import (
    TARGET_SENSITIVITIES,
    Counts,
    Operating,
    OperatingPoint,
    Roc,
    operating,
    operating_points,
    roc,
    sensitivity_by_category,
)
from cytoscreen.stats import Proportion
from cytoscreen.types import Outcome

CALLS: tuple[str, ...] = (Outcome.NEGATIVE, Outcome.REVIEW, Outcome.NOT_ASSESSABLE)


@dataclass(frozen=True)
class DataInfo:
    """What every figure was measured on."""

    manifest: str
    manifest_path: str
    results: str
    n_rows: int
    n_positive: int
    n_negative: int
    n_blank: int
    sites: tuple[str, ...]
    model_id: str | None
    rule: str | None

    def describe(self) -> str:
        return (
            f"manifest {self.manifest}: {self.n_positive + self.n_negative} labelled slides "
            f"({self.n_positive} positive, {self.n_negative} negative"
            + (f", plus {self.n_blank} blank" if self.n_blank else "")
            + f"), site {', '.join(self.sites)}"
        )


@dataclass(frozen=True)
class Evaluation:
    data: DataInfo
    confidence: float
    threshold: float | None
    threshold_source: str
    at_threshold: Operating | None
    by_category: dict[str, Proportion]
    by_site: dict[str, Operating]
    roc: Roc | None
    operating_points: list[OperatingPoint]
    # rows: truth negative/positive; columns: called negative / review / not assessable
    call_table: dict[str, dict[str, int]]
    not_assessable: list[dict[str, str]]
    blank_calls: dict[str, int]
    field_hits: FieldHits | None
    scores: tuple[float, ...]  # assessable labelled slides, for the plots
    labels: tuple[int, ...]
    warnings: list[str] = field(default_factory=list)


def call_of(s: SlideOutcome, threshold: float | None, override: bool) -> str | None:
    """negative | review | not_assessable, or None when the run has no threshold."""
    if not s.assessable():
        return Outcome.NOT_ASSESSABLE
    if not override and s.outcome in (Outcome.NEGATIVE, Outcome.REVIEW):
        return s.outcome
    if threshold is None:
        return None
    return Outcome.REVIEW if (s.score is not None and s.score >= threshold) else Outcome.NEGATIVE


def _operating_on(slides: list[SlideOutcome], calls: list[str | None], conf: float) -> Operating:
    pairs = [(c == Outcome.REVIEW, s.row.positive) for s, c in zip(slides, calls, strict=True)]
    kept = [p for p, c in zip(pairs, calls, strict=True) if c in (Outcome.NEGATIVE, Outcome.REVIEW)]
    counts = Counts.of([k[0] for k in kept], [k[1] for k in kept])
    return operating(counts, n_total=len(slides), confidence=conf)


def evaluate(
    manifest: Manifest,
    run: RunResults,
    *,
    threshold: float | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 2000,
    targets: tuple[float, ...] = TARGET_SENSITIVITIES,
) -> Evaluation:
    """All QA figures of one run. ``threshold`` replaces the run's calibrated threshold."""
    labelled = [s for s in run.slides if s.row.label != "blank"]
    blanks = [s for s in run.slides if s.row.label == "blank"]
    override = threshold is not None
    thr = threshold if override else run.threshold
    source = "given on the command line" if override else "the run's calibration"
    if thr is None:
        source = "none: a scores-only run (pass --threshold to evaluate one)"
    info = DataInfo(
        manifest=manifest.name,
        manifest_path=str(manifest.path),
        results=str(run.results_dir.resolve()),
        n_rows=len(run.slides),
        n_positive=sum(s.row.positive for s in labelled),
        n_negative=sum(not s.row.positive for s in labelled),
        n_blank=len(blanks),
        sites=manifest.sites(),
        model_id=run.model_id,
        rule=run.rule,
    )
    warnings: list[str] = []
    calls = [call_of(s, thr, override) for s in labelled]
    have_calls = all(c is not None for c in calls) and bool(labelled)
    at = _operating_on(labelled, calls, confidence) if have_calls else None

    table = {lab: dict.fromkeys(CALLS, 0) for lab in ("negative", "positive")}
    for s, c in zip(labelled, calls, strict=True):
        if c is not None:
            table[s.row.label][c] += 1

    pos = [(s, c) for s, c in zip(labelled, calls, strict=True) if s.row.positive]
    by_cat = (
        sensitivity_by_category(
            [c == Outcome.REVIEW for s, c in pos if c != Outcome.NOT_ASSESSABLE],
            [s.row.worst_bethesda for s, c in pos if c != Outcome.NOT_ASSESSABLE],
            BETHESDA[1:],
            confidence,
        )
        if have_calls
        else {}
    )
    by_site: dict[str, Operating] = {}
    if have_calls and len(info.sites) > 1:
        for site in info.sites:
            idx = [i for i, s in enumerate(labelled) if s.row.site == site]
            by_site[site] = _operating_on(
                [labelled[i] for i in idx], [calls[i] for i in idx], confidence
            )

    scored = [s for s in labelled if s.assessable()]
    scores = np.array([s.score for s in scored], dtype=np.float64)
    y = np.array([int(s.row.positive) for s in scored], dtype=np.int64)
    curve = roc(scores, y, n_bootstrap=n_bootstrap, confidence=confidence) if scored else None
    points = (
        operating_points(scores, y, n_total=len(labelled), targets=targets, confidence=confidence)
        if scored
        else []
    )
    hits = field_hits(
        [s.first_hit for s in scored if s.n_abnormal_truth and s.row.positive],
        confidence=confidence,
    )

    na = [
        {"slide_id": s.row.slide_id, "label": s.row.label, "status": s.status, "why": s.note}
        for s in labelled
        if not s.assessable()
    ]
    blank_calls = dict.fromkeys(CALLS, 0)
    for s in blanks:
        c = call_of(s, thr, override) or "scored"  # scored: a scores-only run scored it
        blank_calls[c] = blank_calls.get(c, 0) + 1
    if thr is None:
        warnings.append(
            "no calibrated threshold (scores-only run): figures at the threshold are not given"
        )
    if not info.n_positive:
        warnings.append("no positive slide: sensitivity, ROC and AUC cannot be measured")
    if not info.n_negative:
        warnings.append("no negative slide: specificity, ROC and AUC cannot be measured")
    if na:
        warnings.append(
            f"{len(na)} labelled slide(s) not assessable (failed, missing or judged not "
            "assessable): left out of sensitivity/specificity/ROC and listed below"
        )
    wrong_blank = len(blanks) - blank_calls[Outcome.NOT_ASSESSABLE]
    if wrong_blank:
        warnings.append(f"{wrong_blank} blank slide(s) were not called not assessable")
    if at is not None and at.sensitivity is not None and at.sensitivity.n < 30:
        warnings.append(
            f"only {at.sensitivity.n} assessable positive slides: the intervals are wide"
        )
    return Evaluation(
        data=info,
        confidence=confidence,
        threshold=thr,
        threshold_source=source,
        at_threshold=at,
        by_category=by_cat,
        by_site=by_site,
        roc=curve,
        operating_points=points,
        call_table=table,
        not_assessable=na,
        blank_calls=blank_calls,
        field_hits=hits,
        scores=tuple(float(v) for v in scores),
        labels=tuple(int(v) for v in y),
        warnings=warnings,
    )
