"""The batch driver: ``screen`` a folder of slides, the loop over them.

The model, its calibration and its domain reference are resolved once per batch
(``cytoscreen.resolve``) into a ``ScreenJob``. Each slide then goes through
``slide_task.screen_one``: the stages of ``cytoscreen.stages`` (tile in a child process, so a
native reader crash fails only that slide; score with the batch's one scorer; aggregate and
pick the suspicious fields; decide; write the field tables and pictures into
``<out>/slides/<id>/`` with its ``SlideResult`` record). Locally the slides run one after the
other in this process; with ``cache.scheduler_address`` (``--scheduler``) each slide is a task
on a dask.distributed worker (``cytoscreen.cluster``), and this process keeps the lock, the
progress, resume and the summaries. A slide already finished with the same slide content,
configuration, model and calibration is skipped; failed ones are retried. The summaries
(``summary.csv``, ``results.json``) are rebuilt from every slide record present.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cytoscreen
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
    load_results,
    slide_folder,
)
from cytoscreen.slide_task import RESULT_SECTIONS, ScreenJob, screen_one

if TYPE_CHECKING:
    from cytoscreen.cluster import ClusterRun
    from cytoscreen.scoring.scorer import Scorer

__all__ = [  # with names of cytoscreen.resolve, re-exported for scripts that import them here
    "CALIBRATION_NAME",
    "DEFAULT_MODEL_DIR",
    "DOMAIN_NAME",
    "RESULT_SECTIONS",
    "CalibrationChoice",
    "DomainChoice",
    "ModelChoice",
    "ScreenJob",
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


class ScreenObserver(Protocol):
    """What a front end (progress bars) hears about a run. A cluster run reports no stages:
    its slides are screened on the workers."""

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


def screen_slide(
    slide: SlideInput, job: ScreenJob, scorer: Scorer, observer: ScreenObserver | None = None
) -> tuple[SlideResult, bool]:
    """Screen one slide here with ``scorer`` and write its record; returns (result, skipped)
    (``slide_task.screen_one``, which a cluster run's workers call too)."""
    return screen_one(slide, job, lambda: scorer, observer)


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


def _here(
    slides: Sequence[SlideInput], job: ScreenJob, scorer: Scorer, observer: ScreenObserver
) -> Iterator[tuple[SlideInput, SlideResult, bool]]:
    """The slides screened one after the other in this process: (slide, result, skipped)."""
    for s in slides:
        result, skipped = screen_slide(s, job, scorer, observer)
        yield s, result, skipped


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
    address = cfg.cache.scheduler_address
    if address is None:
        warm_up()  # the slide workers' imports overlap with loading the model
    else:
        from cytoscreen.cluster import local_workers

        local_workers(address)  # a bad local:N stops the run before anything is written
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
    with RunLock(out), ExitStack() as stack:
        job = ScreenJob(cfg, out, cache, model, cal, domain)
        cluster: ClusterRun | None = None
        scoring: dict[str, str] | None = None
        warnings: list[str] = []
        if address is None:
            scorer = model.scorer(cfg, cal)  # before any tiling: one that cannot score stops here
            scoring = scorer.describe()
            warnings = job.run_warnings(scoring)
        else:
            from cytoscreen.cluster import ClusterRun, cluster_job, connect

            cluster = ClusterRun(stack.enter_context(connect(address)), cluster_job(job))
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
            # runtime, precision, device actually used (a cluster run: each worker's, below)
            "scoring": scoring,
            "warnings": warnings,
        }
        if cluster is not None:
            info["cluster"] = {"scheduler": address, "workers": {}, "slides": {}}
        write_resolved(cfg, out)
        write_json_atomic(out / "run.json", info)
        obs.run_started(slides)
        results, skipped = [], []
        done = _here(slides, job, scorer, obs) if cluster is None else cluster.screen(slides)
        for s, result, was_skipped in done:
            results.append(result)
            if was_skipped:
                skipped.append(s.id)
            obs.slide_finished(s, result, was_skipped)
        if cluster is not None:
            warnings.extend(cluster.warnings)
            info["cluster"].update(workers=cluster.scoring, slides=cluster.slides)
        info["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        info["n_failed"] = sum(r.failed for r in results)
        write_json_atomic(out / "run.json", info)
        write_summaries(out, info)
    results.sort(key=sort_key)
    return ScreenReport(out, results, skipped, warnings)
