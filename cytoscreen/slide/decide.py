"""Triage: a slide score + a calibrated threshold + adequacy checks -> an outcome with reasons.

NEGATIVE only when the slide is assessable and scores below the threshold; a score equal to the
threshold goes to REVIEW. NOT_ASSESSABLE (never NEGATIVE) when nothing could be scored, too many
patches were unreadable, the resolution is wrong, the slide is unlike the training data, or it
holds too few cells for its preparation type (Bethesda: 5,000 squamous cells on a liquid-based
preparation, 8,000 on a conventional smear; ``TriageSettings.min_cellularity``). Following
Bethesda, abnormal cells make a specimen satisfactory: a scanty slide that scores at or above the
threshold goes to REVIEW (``abnormal_overrides_cellularity``). The cell count is an estimate
with an expected relative error (``cellularity_error``); a count that close to the minimum, on
either side, says so in the reasons. A slide whose cells are mostly obscured (the estimated
share of its cell-bearing area under blood or thick overlap above ``max_obscured_share``,
Bethesda's 75%) is NOT_ASSESSABLE the same way, and goes to REVIEW instead when it scores at or
above the threshold; a slide whose share was not measured (a patch cache made before the
estimate) is not judged on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cytoscreen.errors import BadCalibration
from cytoscreen.slide.record import Calibration
from cytoscreen.slide.settings import TriageSettings
from cytoscreen.types import Outcome, SlideScore, TriageDecision

N_FIELD_REASONS = 3
# The wording of the adequacy rules in a decision's reasons and warnings, spelled once here:
# ``adequacy_findings`` reads a record's reasons back with it (the FHIR export's adequacy).
NOT_ASSESSABLE = "not assessable: "  # the prefix of each reason a slide is not assessable
TOO_FEW_CELLS = "too few cells"
MOSTLY_OBSCURED = "cells mostly obscured"
SCANTY_SLIDE = "scanty slide"
OBSCURED_SLIDE = "slide with cells mostly obscured"
REVIEWED_ANYWAY = "reviewed because it scores at/above threshold"


@dataclass(frozen=True)
class Adequacy:
    """Checks made upstream of the aggregator, passed in."""

    resolution_ok: bool = True
    resolution_note: str = ""  # e.g. "scanned at 2.0 um/px; the model reads 0.5 um/px"
    off_domain: bool = False  # an upstream check judged the slide unlike the training data
    domain_shift: float | None = None  # a statistic, compared with settings.max_domain_shift
    domain_note: str = ""


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _problems(
    s: SlideScore, adequacy: Adequacy, settings: TriageSettings
) -> tuple[list[str], list[tuple[str, str]]]:
    """Reasons the slide cannot be assessed at all, and what it is inadequate for (too few
    cells, mostly obscured: each as its reason and the warning a reviewed slide carries), which
    a slide scoring at/above the threshold may override."""
    out: list[str] = []
    if s.score is None or not math.isfinite(s.score):
        out.append(
            "no cell-bearing patch was found"
            if s.n_patches == 0
            else f"no patch could be scored ({s.n_unreadable} of {s.n_patches} unreadable)"
        )
    if s.n_patches and s.n_unreadable / s.n_patches > settings.max_unreadable_share:
        out.append(
            f"{s.n_unreadable / s.n_patches:.1%} of patches unreadable "
            f"(limit {settings.max_unreadable_share:.1%})"
        )
    if not adequacy.resolution_ok:
        note = adequacy.resolution_note
        out.append("wrong resolution" + (f": {note}" if note else ""))
    shift, limit = adequacy.domain_shift, settings.max_domain_shift
    if adequacy.off_domain or (shift is not None and limit is not None and shift > limit):
        detail = (
            f"domain shift {_fmt(shift)} > {_fmt(limit)}"
            if shift is not None and limit is not None
            else ""
        )
        note = "; ".join(t for t in (detail, adequacy.domain_note) if t)
        out.append("unlike the training data" + (f" ({note})" if note else ""))
    inadequate = []
    if s.cellularity < settings.min_cellularity:
        cells = (
            f"{s.cellularity:,} cells, below the minimum of {settings.min_cellularity:,} "
            f"for a {settings.preparation_name}"
        )
        inadequate.append((f"{TOO_FEW_CELLS}: {cells}", f"{SCANTY_SLIDE} ({cells})"))
    if s.obscured is not None and is_obscured(s.obscured, settings):
        hidden = obscured_text(s.obscured, settings)
        inadequate.append((f"{MOSTLY_OBSCURED}: {hidden}", f"{OBSCURED_SLIDE} ({hidden})"))
    return out, inadequate


def is_obscured(share: float | None, settings: TriageSettings) -> bool:
    """Whether an estimated obscured share is over the limit (never when either is unknown)."""
    limit = settings.max_obscured_share
    return share is not None and limit is not None and share > limit


def obscured_text(share: float, settings: TriageSettings) -> str:
    """``82% of the cell-bearing area under blood or thick overlap (estimated; limit 75%)``."""
    limit = settings.max_obscured_share
    bound = f"; limit {limit:.0%}" if limit is not None else ""
    return f"{share:.0%} of the cell-bearing area under blood or thick overlap (estimated{bound})"


def near_minimum(cellularity: int, settings: TriageSettings) -> bool:
    """Whether the minimum lies within the count's expected error of ``cellularity``
    (``|count - minimum| <= cellularity_error * count``)."""
    gap = abs(cellularity - settings.min_cellularity)
    return settings.min_cellularity > 0 and gap <= settings.cellularity_error * cellularity


def cellularity_reason(cellularity: int, settings: TriageSettings) -> str:
    """``cellularity N cells``, with a note when the minimum is within the count's error."""
    text = f"cellularity {cellularity:,} cells"
    if near_minimum(cellularity, settings):
        text += (
            f", within the count's expected error (±{settings.cellularity_error:.0%}) of the "
            f"{settings.min_cellularity:,} minimum for a {settings.preparation_name}"
        )
    return text


def _reasons(s: SlideScore, threshold: float, settings: TriageSettings) -> list[str]:
    out = []
    if s.score is not None and math.isfinite(s.score):
        sign = ">=" if s.score >= threshold else "<"
        out.append(f"score {_fmt(s.score)} {sign} threshold {_fmt(threshold)} ({s.rule})")
    out.append(cellularity_reason(s.cellularity, settings))
    if s.obscured is not None:
        out.append(f"obscured: {obscured_text(s.obscured, settings)}")
    out.append(f"scored {s.n_scored:,} of {s.n_patches:,} patches ({s.n_unreadable:,} unreadable)")
    for f in s.fields[:N_FIELD_REASONS]:
        out.append(
            f"field {f.rank}: p={f.score:.3f} at x {f.x0}-{f.x1}, y {f.y0}-{f.y1} "
            f"({len(f.patch_indices)} patches)"
        )
    return out


def decide(
    slide_score: SlideScore,
    calibration: Calibration,
    adequacy: Adequacy | None = None,
    settings: TriageSettings | None = None,
) -> TriageDecision:
    """The triage outcome of one slide, with its reasons and warnings."""
    adequacy = adequacy or Adequacy()
    settings = settings or TriageSettings()
    if calibration.rule != slide_score.rule:
        raise BadCalibration(
            f"the calibration was made for the rule {calibration.rule!r}, "
            f"the slide was scored with {slide_score.rule!r}"
        )
    threshold = calibration.threshold
    problems, inadequate = _problems(slide_score, adequacy, settings)
    warnings = [f"calibration: {w}" for w in calibration.warnings]
    score = slide_score.score
    flagged = not problems and score is not None and score >= threshold
    overridden = flagged and settings.abnormal_overrides_cellularity  # never with problems
    if problems or (inadequate and not overridden):
        outcome = Outcome.NOT_ASSESSABLE
        problems += [reason for reason, _ in inadequate]
    elif flagged:
        outcome = Outcome.REVIEW
        for _, note in inadequate:
            warnings.append(f"{note} {REVIEWED_ANYWAY}")
    else:
        outcome = Outcome.NEGATIVE
    reasons = [f"{NOT_ASSESSABLE}{p}" for p in problems] + _reasons(
        slide_score, threshold, settings
    )
    return TriageDecision(
        outcome=outcome,
        score=score,
        threshold=threshold,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
    )


def never_negative(decision: TriageDecision, reason: str | None) -> TriageDecision:
    """A slide the threshold may not hold for is not set aside: with a ``reason`` (None: the
    threshold holds), a NEGATIVE outcome becomes REVIEW with that reason first. Every other
    outcome stands: REVIEW and NOT_ASSESSABLE already send the slide to a person."""
    if reason is None or decision.outcome is not Outcome.NEGATIVE:
        return decision
    return replace(decision, outcome=Outcome.REVIEW, reasons=(reason, *decision.reasons))


def scored_otherwise_reason(calibration: Calibration, scoring: dict[str, str] | None) -> str | None:
    """Why a slide scored as ``scoring`` (``Scorer.describe()``) is not set aside under this
    calibration: its runtime or precision differs from the calibration's (None: they match,
    or either does not record them). Scores move between precisions (bf16 against fp32: up to
    0.06 in a slide's top-10 mean on the calibration slides), so the threshold may not hold."""
    if scoring is None:
        return None
    mismatch = calibration.scoring_differs(scoring)
    return None if mismatch is None else f"review: {mismatch}"


@dataclass(frozen=True)
class AdequacyFindings:
    """What a decision's reasons and warnings say of the slide's adequacy rules (cell count,
    obscured share): which failed, and whether the slide went to review all the same."""

    too_few_cells: bool = False
    mostly_obscured: bool = False
    overridden: bool = False  # inadequate, but reviewed: it scores at/above the threshold

    @property
    def adequate(self) -> bool:
        return not (self.too_few_cells or self.mostly_obscured)


def adequacy_findings(reasons: Sequence[str], warnings: Sequence[str]) -> AdequacyFindings:
    """The adequacy rules' verdict as a decision (:func:`decide`) wrote it: a rule that failed is
    a not-assessable reason, or a warning when the slide was reviewed all the same."""
    failed = {r.removeprefix(NOT_ASSESSABLE) for r in reasons if r.startswith(NOT_ASSESSABLE)}
    overridden = [w for w in warnings if w.endswith(REVIEWED_ANYWAY)]
    few = any(r.startswith(f"{TOO_FEW_CELLS}:") for r in failed)
    hidden = any(r.startswith(f"{MOSTLY_OBSCURED}:") for r in failed)
    few_reviewed = any(w.startswith(f"{SCANTY_SLIDE} (") for w in overridden)
    hidden_reviewed = any(w.startswith(f"{OBSCURED_SLIDE} (") for w in overridden)
    return AdequacyFindings(
        too_few_cells=few or few_reviewed,
        mostly_obscured=hidden or hidden_reviewed,
        overridden=few_reviewed or hidden_reviewed,
    )
