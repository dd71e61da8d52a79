"""The batch driver: ``screen`` a folder of slides.

Per slide: tile (in a child process, so a native reader crash fails only that slide), score
(in this process), aggregate and pick the suspicious fields, decide, then write the field
tables and pictures into ``<out>/slides/<id>/`` with its ``SlideResult`` record
(``cytoscreen.slide_result``). A slide already finished with the same slide content,
configuration, model and calibration is skipped; failed ones are retried. The summaries
(``summary.csv``, ``results.json``) are rebuilt from every slide record present.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

import cytoscreen
from cytoscreen.batch import (
    RunLock,
    SlideInput,
    file_sha256,
    find_slides,
    private_dir,
    run_isolated,
    warm_up,
    write_json_atomic,
    write_text_atomic,
)
from cytoscreen.config import Config, write_resolved
from cytoscreen.errors import (
    BadCalibration,
    BadCheckpoint,
    ConfigError,
    CytoscreenError,
)
from cytoscreen.io import slide_key
from cytoscreen.outputs import fields_csv, fields_geojson, fields_json_rows
from cytoscreen.outputs.images import render_slide_images
from cytoscreen.outputs.summary import sort_key, summary_csv
from cytoscreen.slide import (
    Adequacy,
    Calibration,
    decide,
    load_calibration,
    rule_label,
    score_slide,
)
from cytoscreen.slide.applicability import check_scores, never_negative_when_unlike, score_stats
from cytoscreen.slide.domain import (
    DomainProfile,
    DomainReference,
    compare,
    profile_patches,
    sample_indices,
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
from cytoscreen.tiling import PatchStore, StoreAttrs, open_cache, tile_slide
from cytoscreen.tiling.obscured import ObscuredEstimate
from cytoscreen.types import MPP_TOLERANCE, TriageDecision, scoring_kind

if TYPE_CHECKING:
    from cytoscreen.scoring.card import ModelCard
    from cytoscreen.scoring.scorer import Scorer

DEFAULT_MODEL_DIR = Path(cytoscreen.__file__).parent / "models" / "default"
CALIBRATION_NAME = "calibration.json"
# the domain reference beside a model (written by `cytoscreen domain-reference`)
DOMAIN_NAME = "domain.json"
# Config sections that change a slide's result (not where caches live or how fast it runs).
RESULT_SECTIONS = ("reader", "tiling", "foreground", "aggregation", "fields", "triage")


# ---------------------------------------------------------------- model and calibration


@dataclass(frozen=True)
class ModelChoice:
    dir: Path
    card: ModelCard

    def scorer(self, cfg: Config) -> Scorer:
        """The batch's one scorer: the model on its device, in the precision the config asks
        (a setting this machine cannot honour raises ConfigError naming it)."""
        from cytoscreen.scoring.scorer import build_scorer

        # the card was read and the weights checked by resolve_model
        return build_scorer(self.dir, cfg.scoring, card=self.card)

    @property
    def model_id(self) -> str:
        return self.card.model_id


@dataclass(frozen=True)
class CalibrationChoice:
    path: Path
    sha256: str
    calibration: Calibration

    def record(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "threshold": self.calibration.threshold,
            "rule": self.calibration.rule,
            "target_sensitivity": self.calibration.target_sensitivity,
            "scoring": self.calibration.scoring,
        }


@dataclass(frozen=True)
class DomainChoice:
    path: Path
    sha256: str
    reference: DomainReference

    def record(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256}


def resolve_domain(model: ModelChoice) -> DomainChoice | None:
    """The domain reference beside the model (``domain.json``), or None when there is none.

    A reference that exists but cannot be read, or was profiled on patches at another
    resolution than the model reads, stops the run: screening without the check it asks for
    would be silent, and one made at another resolution would judge slides wrongly.
    """
    path = model.dir / DOMAIN_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        reference = DomainReference.from_dict(data)
    except (OSError, ValueError) as exc:
        raise BadCheckpoint(
            f"the domain reference cannot be read ({exc})",
            slide=path,
            hint=f"remake it with `cytoscreen domain-reference --out {path}`, or remove it to "
            "screen without the domain check (the results will say it was skipped)",
        ) from None
    mpp = (reference.source.get("tiling") or {}).get("target_mpp")
    card = model.card
    if mpp is not None and abs(float(mpp) - card.mpp) > MPP_TOLERANCE * card.mpp:
        # texture, stain and dark shares change with the patch resolution: a reference profiled
        # at another one flags (or passes) slides for the wrong reason
        raise BadCheckpoint(
            f"the domain reference was profiled on patches at {mpp} um/px, but model "
            f"{card.model_id} reads {card.mpp} um/px",
            slide=path,
            hint=f"remake it with `cytoscreen domain-reference --out {path}` and a screen "
            "config whose tiling.target_mpp is the model's",
        )
    return DomainChoice(path.resolve(), file_sha256(path), reference)


def resolve_model(cfg: Config, model_dir: Path | None = None) -> ModelChoice:
    """The model to score with: ``model_dir``, else ``scoring.model``, else the bundled one.

    Reads the card and checks the weights file against it, and checks that the tiling
    configuration gives the patches the model was trained on (``screen`` then builds the
    scorer before any tiling, so a broken checkpoint stops the run at once).
    """
    from cytoscreen.scoring.card import CARD_NAME, checked_weights, read_card

    chosen = model_dir or cfg.scoring.model or DEFAULT_MODEL_DIR
    if not (chosen / CARD_NAME).is_file():
        raise BadCheckpoint(
            "no model here (a model directory holds weights.safetensors and card.json)"
            + (
                "; the bundled default model is not installed"
                if chosen == DEFAULT_MODEL_DIR
                else ""
            ),
            slide=chosen,
            hint="pass --model DIR with a model written by `cytoscreen train` "
            "(or set scoring.model in the config)",
        )
    card = read_card(chosen)
    checked_weights(chosen, card)
    px = card.preprocessing.input_size[1]
    off_mpp = abs(cfg.tiling.target_mpp - card.mpp) > MPP_TOLERANCE * card.mpp
    if cfg.tiling.patch_size != px or off_mpp:
        raise ConfigError(
            f"model {card.model_id} reads {px} px patches at {card.mpp} um/px; the config tiles "
            f"{cfg.tiling.patch_size} px at {cfg.tiling.target_mpp} um/px",
            slide=chosen,
            hint=f"set tiling.patch_size: {px} and tiling.target_mpp: {card.mpp} in the config",
        )
    return ModelChoice(chosen, card)


def resolve_calibration(
    cfg: Config, model: ModelChoice, calibration_path: Path | None = None
) -> CalibrationChoice:
    """``calibration_path``, else ``scoring.calibration``, else calibration.json beside the model.

    Refuses a calibration made for another model or aggregation rule.
    """
    path = calibration_path or cfg.scoring.calibration or model.dir / CALIBRATION_NAME
    if not path.is_file():
        raise BadCalibration(
            "no calibration file",
            slide=path,
            hint="pass --calibration calibration.json (made by `cytoscreen calibrate` for this "
            "model), or --scores-only to screen without decisions",
        )
    cal = load_calibration(path)
    rule = rule_label(cfg.aggregation)
    if cal.model_id != model.model_id:
        raise BadCalibration(
            f"made for model {cal.model_id}, but the screen uses {model.model_id}", slide=path
        )
    if cal.rule != rule:
        raise BadCalibration(
            f"made for the aggregation rule {cal.rule}, the config says {rule}",
            slide=path,
            hint="set the aggregation section to the calibration's rule or recalibrate",
        )
    return CalibrationChoice(path.resolve(), file_sha256(path), cal)


# ---------------------------------------------------------------- per-slide stages


def estimate_cellularity(cache: PatchStore) -> int:
    """Cells on the slide: nuclei counted by the tiler in the patches that could be read."""
    return int(cache.nuclei[cache.valid].sum())


def stored_obscured(cache: PatchStore) -> ObscuredEstimate | None:
    """The obscured share the tiler measured on the slide's foreground view; None when the
    store was made before the estimate existed (unknown, not 0)."""
    return cache.attrs.obscured


def sample_patches(cache: PatchStore) -> npt.NDArray[np.uint8] | None:
    """The cached patches the domain check profiles (see ``sample_indices``); None if none."""
    idx = sample_indices(cache.valid, cache.foreground, cache.chunk_patches)
    if idx.size == 0:
        return None
    return np.asarray(cache.images.get_orthogonal_selection((idx,)), dtype=np.uint8)


def profile_cache(cache: PatchStore) -> DomainProfile | None:
    """The domain profile of a sample of the slide's cached patches; None without patches."""
    patches = sample_patches(cache)
    return None if patches is None else profile_patches(patches)


def domain_check(
    cache: PatchStore, domain: DomainChoice | None, limit: float | None
) -> tuple[Adequacy, dict[str, Any]]:
    """The slide's domain shift (what ``decide`` needs) and its record (``SlideResult.domain``)."""
    record: dict[str, Any] = {
        "checked": False,
        "reference": domain.record() if domain else None,
        "limit": limit,
        "shift": None,
        "measured": None,
        "off_domain": False,
        "note": "",
        "z": {},
        "profile": None,
    }
    if domain is None:
        record["note"] = (
            f"skipped: no domain reference ({DOMAIN_NAME}) beside the model; "
            "make one with `cytoscreen domain-reference --out MODEL/domain.json`"
        )
        return Adequacy(), record
    profile = profile_cache(cache)
    if profile is None:
        record["note"] = "skipped: no foreground patch to profile"
        return Adequacy(), record
    check = compare(profile, domain.reference, limit)
    off = check.off_domain(limit)
    record.update(check.to_dict(), checked=True, off_domain=off, profile=profile.to_dict())
    return Adequacy(off_domain=off, domain_shift=check.shift, domain_note=check.note), record


def _adequacy(attrs: StoreAttrs, cfg: Config, domain: Adequacy | None = None) -> Adequacy:
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


def _decision_fields(decision: TriageDecision | None) -> dict[str, Any]:
    if decision is None:
        return {
            "outcome": None,
            "threshold": None,
            "reasons": ["scores only: no calibration was used, so no triage decision"],
            "warnings": [],
        }
    return {
        "outcome": decision.outcome.value,
        "threshold": decision.threshold,
        "reasons": list(decision.reasons),
        "warnings": list(decision.warnings),
    }


def _process(slide: SlideInput, run: _Run, timings: dict[str, float]) -> dict[str, Any]:
    from cytoscreen.scoring.infer import score_cache

    cfg, obs = run.cfg, run.observer
    out = slide_folder(run.out_dir, slide.id)
    t = time.perf_counter()
    obs.stage(slide, "tiling", 0, None)
    store = run_isolated(
        tile_slide,
        slide.path,
        cfg,
        run.cache_dir,
        slide=str(slide.path),
        progress=lambda d, n: obs.stage(slide, "tiling", d, n),
    )
    timings["tiling"] = time.perf_counter() - t

    t = time.perf_counter()
    obs.stage(slide, "scoring", 0, None)
    sc = cfg.scoring
    score_cache(store, run.get_scorer(), sc.batch_size, threads=sc.threads)
    timings["scoring"] = time.perf_counter() - t

    t = time.perf_counter()
    obs.stage(slide, "deciding", 0, None)
    cache = open_cache(store)
    prob = cache.read_scores(run.model.model_id)
    size_l0 = cache.attrs.size_l0
    cal = run.calibration.calibration if run.calibration else None
    obscured = stored_obscured(cache)
    sscore = score_slide(
        prob,
        cache.coords,
        size_l0,
        cellularity=estimate_cellularity(cache),
        obscured=obscured.share if obscured is not None else None,
        settings=cfg.aggregation,
        field_settings=cfg.fields,
        learned=cal.learned if cal else None,
    )
    in_domain, domain_record = domain_check(cache, run.domain, cfg.triage.max_domain_shift)
    adequacy = _adequacy(cache.attrs, cfg, in_domain)
    decision = decide(sscore, cal, adequacy, cfg.triage) if cal else None
    applicability: dict[str, Any] | None = None
    if cal is not None and cal.applicability is not None and decision is not None:
        check = check_scores(score_stats(prob, cache.nuclei > 0), cal.applicability)
        decision = never_negative_when_unlike(decision, check)
        applicability = check.to_dict()
    rows = fields_json_rows(sscore.fields)
    write_text_atomic(out / "fields.csv", fields_csv(sscore.fields))
    write_json_atomic(
        out / "fields.json", {"slide": slide.id, "units": "level-0 px", "fields": rows}
    )
    write_text_atomic(out / "fields.geojson", fields_geojson(sscore.fields, slide.id))
    timings["deciding"] = time.perf_counter() - t

    t = time.perf_counter()
    obs.stage(slide, "images", 0, None)
    extra_warnings = []
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
            prob=prob,
            coords=cache.coords,
            size_l0=size_l0,
            fields=sscore.fields,
            threshold=decision.threshold if decision is not None else None,
        )
    except CytoscreenError as err:  # the decision stands; only its pictures are missing
        extra_warnings.append(f"thumbnail/field images not written: {err}")
    timings["images"] = time.perf_counter() - t

    if decision is not None:
        extra_warnings += run.warnings  # the run's own (each slide's record stands alone)
    result = _decision_fields(decision)
    if not domain_record["checked"]:
        extra_warnings.append(f"domain check {domain_record['note']}")
    if obscured is None and cfg.triage.max_obscured_share is not None:
        extra_warnings.append(
            "obscured share not measured (the patch cache was made before the estimate "
            "existed; delete it to re-tile), so the obscured-cells rule was not applied"
        )
    result["warnings"] += extra_warnings
    return {
        **result,
        "score": sscore.score,
        "rule": sscore.rule,
        "cellularity": sscore.cellularity,
        "obscured": sscore.obscured,  # estimated share of the cell area; None = unknown
        "obscured_parts": obscured.to_dict() if obscured is not None else None,
        "counts": {
            "n_patches": sscore.n_patches,
            "n_scored": sscore.n_scored,
            "n_unreadable": sscore.n_unreadable,
            "n_fields": len(sscore.fields),
        },
        "fields": rows,
        "domain": domain_record,
        "applicability": applicability,
        "scoring": run.get_scorer().describe(),
        "slide": {
            "mpp": cache.attrs.mpp,
            "mpp_source": cache.attrs.mpp_source,
            "backend": cache.attrs.backend,
            "target_mpp": cache.attrs.target_mpp,
            "patch_size": cache.attrs.patch_size,
        },
        "cache": str(store),
    }


def _error_text(err: BaseException, slide: SlideInput) -> str:
    if isinstance(err, CytoscreenError):
        return str(err)
    return str(
        CytoscreenError(
            f"{type(err).__name__}: {err}",
            slide=slide.path,
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
    base: dict[str, Any] = {
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
        base["slide_key"] = key
        try:
            previous = read_result(out)
        except UnreadableResult:
            previous = None  # damaged: screened again
        if previous is not None and _reusable(previous, key, run):
            return previous, True
        body = _process(slide, run, timings)
        result = {**base, "status": "ok", "error": None, **body}
    except Exception as err:  # noqa: BLE001 - one bad slide must never stop the batch
        result = {
            **base,
            "status": "failed",
            "error": _error_text(err, slide),
            "outcome": None,
            "score": None,
            "threshold": None,
            "fields": [],
        }
    timings["total"] = time.perf_counter() - t0
    result["timings"] = {k: round(v, 3) for k, v in timings.items()}
    result["started"] = started.isoformat(timespec="seconds")
    result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    record = SlideResult.model_validate(result)
    write_result(out, record)
    return record, False


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
    for pkg in ("numpy", "torch", "timm", "zarr", "dask", "openslide-python", "tiffslide"):
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
            slide=", ".join(str(i) for i in inputs),
            hint="give a folder holding .svs/.tif/.tiff/.ndpi/.mrxs/... files, or the files",
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
