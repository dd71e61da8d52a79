"""One slide's screen as stage functions: tile -> score -> aggregate -> decide -> write.

Each stage takes and returns typed values, so each can be run and tested on its own (on a
small patch store) without ``pipeline.screen``, which calls them in order for every slide
(``slide_task._process``, locally or on a cluster worker) and times them:

- :func:`tile`: the slide -> its patch store (in a child process: a native reader crash fails
  only that slide);
- :func:`score`: the store -> :class:`Scored`, the store with the model's patch scores;
- :func:`aggregate`: -> ``SlideScore`` (slide score, cellularity, obscured share, fields);
- :func:`check_domain`: the store -> :class:`DomainChecked` (the domain check: a sample of the
  cached patches against the model's reference; it needs no scores, and runs beside the
  pictures);
- :func:`decide`: -> :class:`Decided` (the triage decision with the domain and applicability
  checks, or no decision without a calibration);
- :func:`write_fields` and :func:`draw_images`: the field tables and the pictures in the
  slide's folder; :func:`build_result`: the slide's ``SlideResult`` record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cytoscreen.batch import SlideInput, run_isolated, write_json_atomic, write_text_atomic
from cytoscreen.config import Config, ScoringConfig
from cytoscreen.errors import CytoscreenError
from cytoscreen.outputs import fields_csv, fields_geojson, fields_json_rows
from cytoscreen.outputs.images import render_slide_images
from cytoscreen.resolve import DomainChoice, domain_check
from cytoscreen.slide import Adequacy, Calibration, score_slide
from cytoscreen.slide import decide as triage
from cytoscreen.slide.applicability import check_scores, never_negative_when_unlike, score_stats
from cytoscreen.slide.decide import never_negative, scored_otherwise_reason
from cytoscreen.slide_result import SlideResult
from cytoscreen.tiling import PatchStore, StoreAttrs, open_cache, tile_slide
from cytoscreen.tiling.obscured import ObscuredEstimate
from cytoscreen.types import SlideScore, TriageDecision, scores_key

if TYPE_CHECKING:
    from cytoscreen.scoring.scorer import Scorer

SCORES_ONLY_REASON = "scores only: no calibration was used, so no triage decision"


@dataclass(frozen=True)
class Scored:
    """A tiled slide's patch store with one model's patch scores (NaN: not scored)."""

    store: PatchStore
    prob: npt.NDArray[np.float32]


@dataclass(frozen=True)
class DomainChecked:
    """The domain check of a tiled slide: what the decision needs (``adequacy``: off domain or
    not, the shift) and its record (``SlideResult.domain``)."""

    adequacy: Adequacy
    record: dict[str, Any]


@dataclass(frozen=True)
class Decided:
    """What ``decide`` made of a slide score: the triage decision (None without a calibration)
    and the records of the checks behind it (``SlideResult.domain``, ``.applicability``)."""

    decision: TriageDecision | None
    domain: dict[str, Any]
    applicability: dict[str, Any] | None = None


# ---------------------------------------------------------------- helpers of the stages


def estimate_cellularity(cache: PatchStore) -> int:
    """Cells on the slide: nuclei counted by the tiler in the patches that could be read."""
    return int(cache.nuclei[cache.valid].sum())


def stored_obscured(cache: PatchStore) -> ObscuredEstimate | None:
    """The obscured share the tiler measured on the slide's foreground view; None when the
    store was made before the estimate existed (unknown, not 0)."""
    return cache.attrs.obscured


def adequacy(attrs: StoreAttrs, cfg: Config, domain: Adequacy | None = None) -> Adequacy:
    """Resolution check (a slide scanned coarser than the model's resolution is upsampled),
    with the domain check's fields from ``domain``."""
    base = domain or Adequacy()
    mpp, target = attrs.mpp, cfg.tiling.target_mpp
    if mpp > target * (1.0 + cfg.tiling.level_tolerance):
        return replace(
            base,
            resolution_ok=False,
            resolution_note=f"scanned at {mpp:.3g} um/px; the model reads {target:g} um/px",
        )
    return base


# ---------------------------------------------------------------- the stages


def tile(
    slide: SlideInput,
    cfg: Config,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Tile ``slide`` into its patch store under ``cache_dir`` (resumed or reused when there is
    one), in a child process; returns the store's path."""
    store: Path = run_isolated(
        tile_slide, slide.path, cfg, cache_dir, slide=str(slide.path), progress=progress
    )
    return store


def score(store: Path, scorer: Scorer, settings: ScoringConfig) -> Scored:
    """Score the store's patches with ``scorer`` (resumed; kept when already scored the same
    way) and read the scores back."""
    from cytoscreen.scoring.infer import score_cache

    score_cache(store, scorer, settings.batch_size, threads=settings.threads)
    cache = open_cache(store)
    return Scored(cache, cache.read_scores(scores_key(scorer.card.model_id, scorer.describe())))


def aggregate(scored: Scored, cfg: Config, calibration: Calibration | None = None) -> SlideScore:
    """The slide score (by the config's rule, or the calibration's learned one), its counts and
    the suspicious fields."""
    cache = scored.store
    obscured = stored_obscured(cache)
    return score_slide(
        scored.prob,
        cache.coords,
        cache.attrs.size_l0,
        cellularity=estimate_cellularity(cache),
        obscured=obscured.share if obscured is not None else None,
        settings=cfg.aggregation,
        field_settings=cfg.fields,
        learned=calibration.learned if calibration else None,
    )


def check_domain(scored: Scored, domain: DomainChoice | None, cfg: Config) -> DomainChecked:
    """The domain check of the scored slide's cached patches (skipped and recorded as such
    without a reference). It needs no scores, only the store already open in ``scored``, so
    ``slide_task`` runs it on a thread of its own beside the pictures (beside the scoring it
    slowed the scoring by more than half its own time on 2 cores)."""
    in_domain, record = domain_check(scored.store, domain, cfg.triage.max_domain_shift)
    return DomainChecked(in_domain, record)


def decide(
    scored: Scored,
    slide_score: SlideScore,
    cfg: Config,
    calibration: Calibration | None,
    domain: DomainChecked,
    scoring: dict[str, str] | None = None,
) -> Decided:
    """The triage decision with the adequacy rules (the resolution, and the domain check
    ``domain``, recorded even without a calibration) and two checks that the threshold holds,
    each of which keeps a slide from being called negative: the scores were made as the
    calibration's (``scoring``, a ``Scorer.describe()``: runtime and precision) and they look
    like the calibration negatives' (the applicability check). No decision without a
    calibration."""
    cache = scored.store
    in_domain, domain_record = domain.adequacy, domain.record
    if calibration is None:
        return Decided(None, domain_record)
    decision = triage(slide_score, calibration, adequacy(cache.attrs, cfg, in_domain), cfg.triage)
    decision = never_negative(decision, scored_otherwise_reason(calibration, scoring))
    if calibration.applicability is None:
        return Decided(decision, domain_record)
    check = check_scores(score_stats(scored.prob, cache.nuclei > 0), calibration.applicability)
    return Decided(never_negative_when_unlike(decision, check), domain_record, check.to_dict())


def write_fields(out: Path, slide_id: str, slide_score: SlideScore) -> list[dict[str, Any]]:
    """fields.csv, fields.json and fields.geojson in the slide's folder ``out``; returns the
    fields as the JSON rows (``SlideResult.fields``)."""
    rows = fields_json_rows(slide_score.fields)
    write_text_atomic(out / "fields.csv", fields_csv(slide_score.fields))
    write_json_atomic(
        out / "fields.json", {"slide": slide_id, "units": "level-0 px", "fields": rows}
    )
    write_text_atomic(out / "fields.geojson", fields_geojson(slide_score.fields, slide_id))
    return rows


def draw_images(
    slide: SlideInput,
    out: Path,
    scored: Scored,
    slide_score: SlideScore,
    threshold: float | None,
    cfg: Config,
) -> list[str]:
    """The thumbnail, heatmap and field images in ``out`` (in a child process; the heatmap's
    scale marks ``threshold``, the calibration's, None without one); returns the warning when
    they could not be written (the decision stands without its pictures)."""
    cache = scored.store
    try:
        run_isolated(
            render_slide_images,
            slide.path,
            out,
            slide=str(slide.path),
            backend=cache.attrs.backend or cfg.reader.backend,
            mpp_override=cfg.reader.mpp_override,
            target_mpp=cfg.tiling.target_mpp,
            tolerance=cfg.tiling.level_tolerance,
            prob=scored.prob,
            coords=cache.coords,
            size_l0=cache.attrs.size_l0,
            fields=slide_score.fields,
            threshold=threshold,
        )
    except CytoscreenError as err:
        return [f"thumbnail/field images not written: {err}"]
    return []


def build_result(
    provenance: Mapping[str, Any],
    scored: Scored,
    slide_score: SlideScore,
    decided: Decided,
    rows: Sequence[dict[str, Any]],
    *,
    cfg: Config,
    scoring: Mapping[str, Any],
    image_warnings: Sequence[str] = (),
    run_warnings: Sequence[str] = (),
) -> SlideResult:
    """The record of a screened slide (``status`` ok): ``provenance`` (what resume compares,
    the slide's id and paths) with the decision, the score and what it rests on, the checks'
    records and the warnings; ``timings`` and the times are stamped by the caller."""
    cache, decision = scored.store, decided.decision
    obscured = stored_obscured(cache)
    warnings = list(image_warnings)
    if decision is not None:
        warnings += run_warnings  # the run's own (each slide's record stands alone)
    if not decided.domain["checked"]:
        warnings.append(f"domain check {decided.domain['note']}")
    if obscured is None and cfg.triage.max_obscured_share is not None:
        warnings.append(
            "obscured share not measured (the patch cache was made before the estimate "
            "existed; delete it to re-tile), so the obscured-cells rule was not applied"
        )
    attrs = cache.attrs
    return SlideResult(
        **provenance,
        status="ok",
        error=None,
        outcome=decision.outcome if decision is not None else None,
        threshold=decision.threshold if decision is not None else None,
        reasons=decision.reasons if decision is not None else (SCORES_ONLY_REASON,),
        warnings=(*(decision.warnings if decision is not None else ()), *warnings),
        score=slide_score.score,
        rule=slide_score.rule,
        cellularity=slide_score.cellularity,
        obscured=slide_score.obscured,  # estimated share of the cell area; None = unknown
        obscured_parts=obscured.to_dict() if obscured is not None else None,
        counts={
            "n_patches": slide_score.n_patches,
            "n_scored": slide_score.n_scored,
            "n_unreadable": slide_score.n_unreadable,
            "n_fields": len(slide_score.fields),
        },
        fields=tuple(rows),
        domain=decided.domain,
        applicability=decided.applicability,
        scoring=dict(scoring),
        slide={
            "mpp": attrs.mpp,
            "mpp_source": attrs.mpp_source,
            "backend": attrs.backend,
            "target_mpp": attrs.target_mpp,
            "patch_size": attrs.patch_size,
        },
        cache=str(cache.path),
    )
