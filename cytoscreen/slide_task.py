"""One slide's screen as one call, the same in a local run and on a dask.distributed worker.

``ScreenJob`` is what every slide of a batch is screened with: the configuration, the results
and cache folders, and the model, calibration and domain reference that ``pipeline.screen``
resolved once (``cytoscreen.resolve``). It holds values, not open handles, so it pickles: a
cluster run (``cytoscreen.cluster``) sends it with each slide to the workers.

:func:`screen_one` runs one slide through the stages of ``cytoscreen.stages`` (tile in a child
process, score with the given scorer, aggregate, decide, write the field files and pictures)
and writes its ``SlideResult`` record into ``<out>/slides/<id>/``; a slide already finished the
same way is skipped. A problem with the slide becomes a record with status ``failed``; only a
record that cannot be written raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cytoscreen
from cytoscreen import stages
from cytoscreen.batch import SlideInput, private_dir
from cytoscreen.config import Config
from cytoscreen.errors import CytoscreenError
from cytoscreen.io import slide_key
from cytoscreen.resolve import CalibrationChoice, DomainChoice, ModelChoice
from cytoscreen.slide_result import (
    RESULT_FORMAT,
    SlideResult,
    UnreadableResult,
    read_result,
    slide_folder,
    write_result,
)
from cytoscreen.types import scoring_kind

if TYPE_CHECKING:
    from cytoscreen.scoring.scorer import Scorer

# Config sections that change a slide's result (not where caches live or how fast it runs).
RESULT_SECTIONS = ("reader", "tiling", "foreground", "aggregation", "fields", "triage")


class StageObserver(Protocol):
    """Hears which stage a slide is in (``pipeline.ScreenObserver`` is one)."""

    def stage(self, slide: SlideInput, stage: str, done: int, total: int | None) -> None: ...


class _Silent:
    def stage(self, slide: SlideInput, stage: str, done: int, total: int | None) -> None:
        pass


@dataclass(frozen=True)
class ScreenJob:
    """What every slide of one batch is screened with (picklable)."""

    cfg: Config
    out_dir: Path
    cache_dir: Path
    model: ModelChoice
    calibration: CalibrationChoice | None = None
    domain: DomainChoice | None = None

    @property
    def run_key(self) -> dict[str, Any]:
        """What must match for a finished slide to be skipped (with the slide key)."""
        return {
            "config_hash": self.cfg.hash(*RESULT_SECTIONS),
            "model_id": self.model.model_id,
            "calibration_sha256": self.calibration.key if self.calibration else None,
            "domain_sha256": self.domain.sha256 if self.domain else None,
        }

    def run_warnings(self, scoring: dict[str, str]) -> list[str]:
        """Warnings about the whole run for slides scored as ``scoring`` (a
        ``Scorer.describe()``): a calibration made with another runtime or precision."""
        if self.calibration is None:
            return []
        mismatch = self.calibration.for_scoring(scoring).calibration.scoring_differs(scoring)
        return [f"calibration: {mismatch}"] if mismatch else []

    def provenance(self, slide: SlideInput) -> dict[str, Any]:
        """The head of the slide's record: its id and paths, the version and the run key."""
        return {
            "format": RESULT_FORMAT,
            "id": slide.id,
            "path": str(slide.path),
            "relative_path": slide.relative,
            "version": cytoscreen.__version__,
            "model_id": self.model.model_id,
            "calibration": self.calibration.record() if self.calibration else None,
            **self.run_key,
        }


def failed_result(provenance: dict[str, Any], error: str) -> SlideResult:
    """The record of a slide that could not be screened (no score, no outcome)."""
    return SlideResult(
        **provenance,
        status="failed",
        error=error,
        outcome=None,
        score=None,
        threshold=None,
        fields=(),
    )


def error_text(err: BaseException, slide: SlideInput) -> str:
    """A failed slide's error: a ``CytoscreenError`` as it reads, anything else named as a
    probable bug with the slide as its subject."""
    if isinstance(err, CytoscreenError):
        return str(err)
    return str(
        CytoscreenError(
            f"{type(err).__name__}: {err}",
            subject=slide.path,
            hint="this looks like a bug or a damaged file: rerun this slide alone with "
            "`cytoscreen screen FILE` and report the message if it persists",
        )
    )


@dataclass
class _Slide:
    """One slide's screen in progress: the slide, its job, and how to get the scorer."""

    slide: SlideInput
    job: ScreenJob
    get_scorer: Callable[[], Scorer]
    observer: StageObserver
    scoring_lock: AbstractContextManager[Any]
    timings: dict[str, float]

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Announce stage ``name`` and record its seconds in ``timings`` (only when it
        finishes: a failed slide's timings list the stages it got through)."""
        self.observer.stage(self.slide, name, 0, None)
        t = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - t


def _process(run: _Slide, provenance: dict[str, Any]) -> SlideResult:
    """The slide through the stages: tile -> score -> aggregate -> decide -> write; returns its
    record (without timings)."""
    slide, job = run.slide, run.job
    cfg, out = job.cfg, slide_folder(job.out_dir, slide.id)
    with run.stage("tiling"):
        progress = partial(run.observer.stage, slide, "tiling")
        store = stages.tile(slide, cfg, job.cache_dir, progress)
    with run.stage("scoring"):
        scorer = run.get_scorer()
        with run.scoring_lock:
            scored = stages.score(store, scorer, cfg.scoring)
    how = scorer.describe()
    # the calibration made on scores like these (e.g. calibration.bf16.json for bf16 scores)
    chosen = job.calibration.for_scoring(how) if job.calibration else None
    cal = chosen.calibration if chosen else None
    threshold = cal.threshold if cal else None  # the decision's threshold: the pictures' scale
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="cytoscreen-beside") as beside:
        with run.stage("deciding"):
            # the domain check (the cached patches) and the pictures (the fields and the
            # threshold; a child process) run beside each other and the rest of the decision.
            # (The domain check beside the scoring was measured: on 2 cores it slowed the
            # scoring by more than half its own time, docs/performance.md.)
            checked = beside.submit(stages.check_domain, scored, job.domain, cfg)
            slide_score = stages.aggregate(scored, cfg, cal)
            drawn = beside.submit(
                stages.draw_images, slide, out, scored, slide_score, threshold, cfg
            )
            decided = stages.decide(scored, slide_score, cfg, cal, checked.result(), how)
            rows = stages.write_fields(out, slide.id, slide_score)
        with run.stage("images"):  # what the pictures still take once the decision is made
            image_warnings = drawn.result()
    return stages.build_result(
        provenance,
        scored,
        slide_score,
        decided,
        rows,
        cfg=cfg,
        scoring=how,
        image_warnings=image_warnings,
        run_warnings=job.run_warnings(how),
    )


def _same_scoring(previous: SlideResult, now: dict[str, str]) -> bool:
    """Whether a finished result was scored with the runtime and precision this run uses (a
    result from before these were recorded is not reused)."""
    before = scoring_kind(previous.scoring)
    return before is not None and before == scoring_kind(now)


def reusable(
    previous: SlideResult | None, key: str, job: ScreenJob, scoring: dict[str, str]
) -> bool:
    """Whether ``previous`` finished this slide (content ``key``) as this run, scoring as
    ``scoring``, would."""
    return (
        previous is not None
        and not previous.failed
        and previous.slide_key == key
        and all(getattr(previous, k) == v for k, v in job.run_key.items())
        and _same_scoring(previous, scoring)
    )


def screen_one(
    slide: SlideInput,
    job: ScreenJob,
    get_scorer: Callable[[], Scorer],
    observer: StageObserver | None = None,
    scoring_lock: AbstractContextManager[Any] | None = None,
) -> tuple[SlideResult, bool]:
    """Screen one slide and write its record; returns (result, skipped).

    ``get_scorer`` gives the batch's scorer (called when the slide needs it: a skipped slide
    only asks how it scores); ``scoring_lock`` is held while the scorer runs (a worker's
    threads share its one model). Never raises for a problem with the slide: that becomes a
    record with status ``failed``. Raises ``WriteFailed`` when the record cannot be written.
    """
    out = slide_folder(job.out_dir, slide.id)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    run = _Slide(
        slide, job, get_scorer, observer or _Silent(), scoring_lock or nullcontext(), timings={}
    )
    provenance = job.provenance(slide)
    try:
        private_dir(out)
        key = slide_key(slide.path, mpp_override=job.cfg.reader.mpp_override)
        provenance["slide_key"] = key
        try:
            previous = read_result(out)
        except UnreadableResult:
            previous = None  # damaged: screened again
        if previous is not None and reusable(previous, key, job, get_scorer().describe()):
            return previous, True
        result = _process(run, provenance)
    except Exception as err:  # noqa: BLE001 - one bad slide must never stop the batch
        result = failed_result(provenance, error_text(err, slide))
    run.timings["total"] = time.perf_counter() - t0
    stamped = result.model_copy(
        update={
            "timings": {k: round(v, 3) for k, v in run.timings.items()},
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    write_result(out, stamped)
    return stamped, False
