"""The batch driver: ``screen`` a folder of slides, the loop over them.

The model, its calibration and its domain reference are resolved once per batch
(``cytoscreen.resolve``). Each slide then goes through the stages of ``cytoscreen.stages``:
tile (in a child process, so a native reader crash fails only that slide), score (in this
process, with the batch's one scorer), aggregate and pick the suspicious fields, decide, and
write the field tables and pictures into ``<out>/slides/<id>/`` with its ``SlideResult``
record (``cytoscreen.slide_result``). A slide already finished with the same slide content,
configuration, model and calibration is skipped; failed ones are retried. The summaries
(``summary.csv``, ``results.json``) are rebuilt from every slide record present.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cytoscreen
from cytoscreen import stages
from cytoscreen.batch import (
    RunLock,
    SlideInput,
    find_slides,
    private_dir,
    warm_up,
    write_json_atomic,
    write_text_atomic,
)
from cytoscreen.config import Config, write_resolved
from cytoscreen.errors import CytoscreenError
from cytoscreen.io import slide_key
from cytoscreen.outputs.summary import sort_key, summary_csv
from cytoscreen.resolve import (
    CALIBRATION_NAME,
    DEFAULT_MODEL_DIR,
    DOMAIN_NAME,
    CalibrationChoice,
    DomainChoice,
    ModelChoice,
    profile_cache,
    resolve_calibration,
    resolve_domain,
    resolve_model,
    sample_patches,
)
from cytoscreen.slide_result import (
    RESULT_FORMAT,
    SLIDES_DIR,
    SlideResult,
    UnreadableResult,
    load_results,
    read_result,
    slide_folder,
    write_result,
)
from cytoscreen.types import scoring_kind

if TYPE_CHECKING:
    from cytoscreen.scoring.scorer import Scorer

__all__ = [  # with names of cytoscreen.resolve, re-exported for scripts that import them here
    "CALIBRATION_NAME",
    "DEFAULT_MODEL_DIR",
    "DOMAIN_NAME",
    "RESULT_SECTIONS",
    "CalibrationChoice",
    "DomainChoice",
    "ModelChoice",
    "ScreenObserver",
    "ScreenReport",
    "profile_cache",
    "resolve_calibration",
    "resolve_domain",
    "resolve_model",
    "sample_patches",
    "screen",
    "screen_slide",
    "write_summaries",
]

# Config sections that change a slide's result (not where caches live or how fast it runs).
RESULT_SECTIONS = ("reader", "tiling", "foreground", "aggregation", "fields", "triage")


class ScreenObserver(Protocol):
    """What a front end (progress bars) hears about a run."""

    def run_started(self, slides: Sequence[SlideInput]) -> None: ...

    def stage(self, slide: SlideInput, stage: str, done: int, total: int | None) -> None: ...

    def slide_finished(self, slide: SlideInput, result: SlideResult, skipped: bool) -> None: ...


class _Quiet:
    def run_started(self, slides: Sequence[SlideInput]) -> None:
        pass

    def stage(self, slide: SlideInput, stage: str, done: int, total: int | None) -> None:
        pass

    def slide_finished(self, slide: SlideInput, result: SlideResult, skipped: bool) -> None:
        pass


@dataclass
class _Run:
    cfg: Config
    out_dir: Path
    cache_dir: Path
    model: ModelChoice
    calibration: CalibrationChoice | None
    observer: ScreenObserver
    domain: DomainChoice | None = None
    scorer: Scorer | None = None  # made on first use, then shared by every slide of the batch
    warnings: list[str] = field(default_factory=list)  # about the whole run, shown once

    def get_scorer(self) -> Scorer:
        if self.scorer is None:
            self.scorer = self.model.scorer(self.cfg)
        return self.scorer

    @property
    def run_key(self) -> dict[str, Any]:
        """What must match for a finished slide to be skipped (with the slide key)."""
        return {
            "config_hash": self.cfg.hash(*RESULT_SECTIONS),
            "model_id": self.model.model_id,
            "calibration_sha256": self.calibration.sha256 if self.calibration else None,
            "domain_sha256": self.domain.sha256 if self.domain else None,
        }


@contextmanager
def _stage(name: str, slide: SlideInput, run: _Run, timings: dict[str, float]) -> Iterator[None]:
    """Announce stage ``name`` of ``slide`` and record its seconds in ``timings`` (only when it
    finishes: a failed slide's timings list the stages it got through)."""
    run.observer.stage(slide, name, 0, None)
    t = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - t


def _process(
    slide: SlideInput, run: _Run, provenance: dict[str, Any], timings: dict[str, float]
) -> SlideResult:
    """One slide through the stages (``cytoscreen.stages``): tile -> score -> aggregate ->
    decide -> write; returns its record (without timings)."""
    cfg, out = run.cfg, slide_folder(run.out_dir, slide.id)
    cal = run.calibration.calibration if run.calibration else None
    with _stage("tiling", slide, run, timings):
        progress = partial(run.observer.stage, slide, "tiling")
        store = stages.tile(slide, cfg, run.cache_dir, progress)
    with _stage("scoring", slide, run, timings):
        scored = stages.score(store, run.get_scorer(), cfg.scoring)
    with _stage("deciding", slide, run, timings):
        slide_score = stages.aggregate(scored, cfg, cal)
        decided = stages.decide(scored, slide_score, cfg, cal, run.domain)
        rows = stages.write_fields(out, slide.id, slide_score)
    with _stage("images", slide, run, timings):
        image_warnings = stages.draw_images(slide, out, scored, slide_score, decided.decision, cfg)
    return stages.build_result(
        provenance,
        scored,
        slide_score,
        decided,
        rows,
        cfg=cfg,
        scoring=run.get_scorer().describe(),
        image_warnings=image_warnings,
        run_warnings=run.warnings,
    )


def _error_text(err: BaseException, slide: SlideInput) -> str:
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


def _same_scoring(previous: SlideResult, now: dict[str, str]) -> bool:
    """Whether a finished result was scored with the runtime and precision this run uses (a
    result from before these were recorded is not reused)."""
    before = scoring_kind(previous.scoring)
    return before is not None and before == scoring_kind(now)


def _reusable(previous: SlideResult | None, key: str, run: _Run) -> bool:
    """Whether ``previous`` finished this slide (content ``key``) as this run would."""
    return (
        previous is not None
        and not previous.failed
        and previous.slide_key == key
        and all(getattr(previous, k) == v for k, v in run.run_key.items())
        and _same_scoring(previous, run.get_scorer().describe())
    )


def screen_slide(slide: SlideInput, run: _Run) -> tuple[SlideResult, bool]:
    """Screen one slide and write its record; returns (result, skipped). Never raises for a
    problem with the slide: that becomes a result with status ``failed``."""
    out = slide_folder(run.out_dir, slide.id)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    provenance: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "id": slide.id,
        "path": str(slide.path),
        "relative_path": slide.relative,
        "version": cytoscreen.__version__,
        "model_id": run.model.model_id,
        "calibration": run.calibration.record() if run.calibration else None,
        **run.run_key,
    }
    try:
        private_dir(out)
        key = slide_key(slide.path, mpp_override=run.cfg.reader.mpp_override)
        provenance["slide_key"] = key
        try:
            previous = read_result(out)
        except UnreadableResult:
            previous = None  # damaged: screened again
        if previous is not None and _reusable(previous, key, run):
            return previous, True
        result = _process(slide, run, provenance, timings)
    except Exception as err:  # noqa: BLE001 - one bad slide must never stop the batch
        result = SlideResult(
            **provenance,
            status="failed",
            error=_error_text(err, slide),
            outcome=None,
            score=None,
            threshold=None,
            fields=(),
        )
    timings["total"] = time.perf_counter() - t0
    stamped = result.model_copy(
        update={
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    write_result(out, stamped)
    return stamped, False


# ---------------------------------------------------------------- the run


@dataclass
class ScreenReport:
    out_dir: Path
    results: list[SlideResult]  # this run's slides, worst first
    skipped: list[str] = field(default_factory=list)  # ids finished by an earlier run
    warnings: list[str] = field(default_factory=list)  # about the whole run (also in run.json)

    @property
    def n_failed(self) -> int:
        return sum(r.failed for r in self.results)

    def outcome_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.state] = counts.get(r.state, 0) + 1
        return counts


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "cytoscreen": cytoscreen.__version__}
    for pkg in (
        "numpy",
        "torch",
        "timm",
        "zarr",
        "dask",
        "openslide-python",
        "tiffslide",
        "wsidicom",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _cache_dir(cfg: Config, out_dir: Path, cache_dir: Path | None) -> Path:
    """``cache_dir`` (--cache), else ``cache.dir`` when the config sets it (even to its
    default value), else ``<out_dir>/cache``."""
    if cache_dir is not None:
        return cache_dir
    if "dir" in cfg.cache.model_fields_set:  # set in the config: honour it
        return cfg.cache.dir
    return out_dir / "cache"


def write_summaries(out_dir: Path, run_info: dict[str, Any]) -> list[SlideResult]:
    """Rebuild summary.csv and results.json from every slide record in ``out_dir``."""
    results = sorted(load_results(out_dir), key=sort_key)
    write_text_atomic(out_dir / "summary.csv", summary_csv(results))
    write_json_atomic(
        out_dir / "results.json",
        {"format": RESULT_FORMAT, "run": run_info, "slides": [r.to_json() for r in results]},
    )
    return results


def screen(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    cfg: Config,
    *,
    cache_dir: str | Path | None = None,
    model_dir: str | Path | None = None,
    calibration_path: str | Path | None = None,
    scores_only: bool = False,
    observer: ScreenObserver | None = None,
) -> ScreenReport:
    """Screen every slide under ``inputs`` (folders searched recursively, files taken as given).

    Writes ``<out_dir>/slides/<id>/`` per slide, ``summary.csv``, ``results.json``,
    ``run.json`` and ``config.resolved.yaml``. ``scores_only`` screens without a calibration
    (no triage outcome): the first step towards
    :func:`cytoscreen.calibration.calibrate_from_results`. Raises for problems
    of the whole run (no model, no calibration, folder locked, no slides); a problem with one
    slide is recorded as that slide's failure.

    Uses child processes (fork server): call it from a script guarded by
    ``if __name__ == "__main__":``.
    """
    out = Path(out_dir)
    obs = observer or _Quiet()
    warm_up()  # the slide workers' imports overlap with loading the model
    model = resolve_model(cfg, Path(model_dir) if model_dir else None)
    cal = (
        None
        if scores_only
        else resolve_calibration(cfg, model, Path(calibration_path) if calibration_path else None)
    )
    domain = resolve_domain(model)
    cache = Path(_cache_dir(cfg, out, Path(cache_dir) if cache_dir else None))
    slides = find_slides(inputs, exclude=[out, cache])
    if not slides:
        raise CytoscreenError(
            "no slide files found",
            subject=", ".join(str(i) for i in inputs),
            hint="give a folder holding .svs/.tif/.tiff/.ndpi/.mrxs/... files or DICOM series "
            "folders (.dcm), or the files",
        )
    for folder in (out, out / SLIDES_DIR, cache):
        private_dir(folder)
    for s in slides:  # a planted link would send this slide's records elsewhere
        if slide_folder(out, s.id).is_symlink():
            private_dir(slide_folder(out, s.id))
    with RunLock(out):
        run = _Run(cfg, out, cache, model, cal, obs, domain=domain)
        run.get_scorer()  # before any tiling: a model that cannot score stops the run here
        mismatch = cal.calibration.scoring_differs(run.get_scorer().describe()) if cal else None
        if mismatch:
            run.warnings.append(f"calibration: {mismatch}")
        info: dict[str, Any] = {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "finished": None,
            "inputs": [str(Path(i).resolve()) for i in inputs],
            "n_slides": len(slides),
            "cache_dir": str(cache.resolve()),
            "config_hash": cfg.hash(),
            "result_config_hash": cfg.hash(*RESULT_SECTIONS),
            "config": cfg.to_dict(),
            "model": {"id": model.model_id, "dir": str(model.dir.resolve())},
            "calibration": cal.record() if cal else None,
            "domain_reference": domain.record() if domain else None,
            "versions": _versions(),
            "scoring": run.get_scorer().describe(),  # runtime, precision, device actually used
            "warnings": run.warnings,
        }
        write_resolved(cfg, out)
        write_json_atomic(out / "run.json", info)
        obs.run_started(slides)
        results, skipped = [], []
        for s in slides:
            result, was_skipped = screen_slide(s, run)
            results.append(result)
            if was_skipped:
                skipped.append(s.id)
            obs.slide_finished(s, result, was_skipped)
        info["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        info["n_failed"] = sum(r.failed for r in results)
        write_json_atomic(out / "run.json", info)
        write_summaries(out, info)
    results.sort(key=sort_key)
    return ScreenReport(out, results, skipped, list(run.warnings))
