"""What a screen runs with, resolved once per batch before any slide is touched: the model
(``resolve_model``), its calibration (``resolve_calibration``) and its domain reference
(``resolve_domain``), each as a frozen choice with the provenance the results record; and the
domain check's I/O (``domain_check``: a sample of one slide's cached patches profiled and
compared with that reference; the maths is ``slide.domain``'s).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cytoscreen.config import Config
from cytoscreen.errors import BadCalibration, BadCheckpoint, ConfigError
from cytoscreen.fsutil import file_sha256
from cytoscreen.scoring.card import BUNDLED_MODEL_DIR
from cytoscreen.slide import Adequacy, Calibration, load_calibration, rule_label
from cytoscreen.slide.domain import (
    DomainProfile,
    DomainReference,
    compare,
    profile_patches,
    sample_indices,
)
from cytoscreen.tiling import PatchStore
from cytoscreen.types import mpp_differs

if TYPE_CHECKING:
    from cytoscreen.scoring.card import ModelCard
    from cytoscreen.scoring.scorer import Scorer

DEFAULT_MODEL_DIR = BUNDLED_MODEL_DIR  # the bundled model (package data)
CALIBRATION_NAME = "calibration.json"
ALTERNATIVE_CALIBRATIONS = "calibration.*.json"  # calibration.bf16.json: scores made in bf16
# the domain reference beside a model (written by `cytoscreen domain-reference`)
DOMAIN_NAME = "domain.json"


def calibration_name(precision: str) -> str:
    """The file name of a model's calibration of scores made at ``precision``: calibration.json
    for fp32, ``calibration.<precision>.json`` (one of ``ALTERNATIVE_CALIBRATIONS``) else."""
    return CALIBRATION_NAME if precision == "fp32" else f"calibration.{precision}.json"


# ---------------------------------------------------------------- model and calibration


@dataclass(frozen=True)
class ModelChoice:
    dir: Path
    card: ModelCard

    def scorer(self, cfg: Config, calibration: CalibrationChoice | None = None) -> Scorer:
        """The batch's one scorer: the model on its device, in the precision the config asks
        (a setting this machine cannot honour raises ConfigError naming it).

        With ``scoring.precision: auto`` and a ``calibration``, a precision that some
        calibration describes is preferred to one none does: a slide scored in a way no
        calibration describes can never be set aside (``slide.decide.never_negative``), so
        PyTorch on a CPU without OpenVINO scores in fp32 (which the fp32 calibration holds for)
        rather than the card's faster bf16, and a model whose int8 was not calibrated scores in
        bf16 (or fp32); the runtime note says so."""
        from cytoscreen.scoring.scorer import build_scorer

        # the card was read and the weights checked by resolve_model
        scorer = build_scorer(self.dir, cfg.scoring, card=self.card)
        if calibration is None or cfg.scoring.precision != "auto":
            return scorer
        first = scorer.describe()
        if calibration.describes(first):
            return scorer
        for precision in ("bf16", "fp32"):  # the faster first
            if precision == first["precision"]:
                continue
            scoring = cfg.scoring.model_copy(update={"precision": precision})
            try:
                other = build_scorer(self.dir, scoring, card=self.card)
            except ConfigError:
                continue  # not on this machine
            how = other.describe()
            if calibration.describes(how):
                note = (
                    f"{other.runtime_note}; precision {how['precision']}, "
                    f"not {first['precision']}: "
                    f"no calibration of this model describes {first['runtime']} "
                    f"{first['precision']} scores, so slides scored that way could never be "
                    "set aside"
                )
                return replace(other, runtime_note=note.lstrip("; "))
        return scorer

    @property
    def model_id(self) -> str:
        return self.card.model_id


@dataclass(frozen=True)
class CalibrationChoice:
    """The calibration of a run: the one named (or calibration.json beside the model) and,
    beside the model's own, one per other precision it was calibrated at
    (``calibration.<precision>.json``: the threshold of scores made that way)."""

    path: Path
    sha256: str
    calibration: Calibration
    alternatives: tuple[CalibrationChoice, ...] = ()

    @property
    def key(self) -> str:
        """What a finished slide's record must match: every file's sha256."""
        return "+".join([self.sha256, *(a.sha256 for a in self.alternatives)])

    def describes(self, how: dict[str, str]) -> bool:
        """Whether this calibration or one of its alternatives was made on scores like
        ``how`` (a Scorer.describe())."""
        return self.for_scoring(how).calibration.scoring_differs(how) is None

    def for_scoring(self, how: dict[str, str]) -> CalibrationChoice:
        """The calibration made on scores like ``how`` (a ``Scorer.describe()``): this one, or
        the alternative that matches; this one when none does (its decisions then keep the
        slide from NEGATIVE, ``slide.decide.scored_otherwise_reason``)."""
        for choice in (self, *self.alternatives):
            if choice.calibration.scoring_differs(how) is None:
                return choice
        return self

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": str(self.path),
            "sha256": self.sha256,
            "threshold": self.calibration.threshold,
            "rule": self.calibration.rule,
            "target_sensitivity": self.calibration.target_sensitivity,
            "scoring": self.calibration.scoring,
        }
        if self.alternatives:
            out["alternatives"] = [a.record() for a in self.alternatives]
        return out


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
            subject=path,
            hint=f"remake it with `cytoscreen domain-reference --out {path}`, or remove it to "
            "screen without the domain check (the results will say it was skipped)",
        ) from None
    mpp = (reference.source.get("tiling") or {}).get("target_mpp")
    card = model.card
    if mpp is not None and mpp_differs(float(mpp), card.mpp):
        # texture, stain and dark shares change with the patch resolution: a reference profiled
        # at another one flags (or passes) slides for the wrong reason
        raise BadCheckpoint(
            f"the domain reference was profiled on patches at {mpp} um/px, but model "
            f"{card.model_id} reads {card.mpp} um/px",
            subject=path,
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
            subject=chosen,
            hint="pass --model DIR with a model written by `cytoscreen train` "
            "(or set scoring.model in the config)",
        )
    card = read_card(chosen)
    checked_weights(chosen, card)
    px = card.preprocessing.input_size[1]
    off_mpp = mpp_differs(cfg.tiling.target_mpp, card.mpp)
    if cfg.tiling.patch_size != px or off_mpp:
        raise ConfigError(
            f"model {card.model_id} reads {px} px patches at {card.mpp} um/px; the config tiles "
            f"{cfg.tiling.patch_size} px at {cfg.tiling.target_mpp} um/px",
            subject=chosen,
            hint=f"set tiling.patch_size: {px} and tiling.target_mpp: {card.mpp} in the config",
        )
    return ModelChoice(chosen, card)


def deciding_calibration(results: Path) -> Path:
    """The calibration file that decided a finished run's slides: of those its run.json lists,
    the one made on scores like the run's (``calibration.bf16.json`` for an OpenVINO bf16
    screen of the bundled model); the run's own when none is."""
    run = json.loads((results / "run.json").read_text(encoding="utf-8"))
    rec = run["calibration"]
    paths = [Path(r["path"]) for r in (rec, *rec.get("alternatives", []))]
    for path in paths:
        if load_calibration(path).scoring_differs(run["scoring"]) is None:
            return path
    return paths[0]


def resolve_calibration(
    cfg: Config, model: ModelChoice, calibration_path: Path | None = None
) -> CalibrationChoice:
    """``calibration_path``, else ``scoring.calibration``, else calibration.json beside the model
    (with the model's calibrations at other precisions, ``calibration.<precision>.json``, as
    alternatives: each slide is decided by the one made on scores like its own).

    Refuses a calibration made for another model or aggregation rule.
    """
    named = calibration_path or cfg.scoring.calibration
    path = named or model.dir / CALIBRATION_NAME
    choice = _calibration_file(cfg, model, path)
    if named is not None:
        return choice
    others = sorted(model.dir.glob(ALTERNATIVE_CALIBRATIONS))
    return replace(choice, alternatives=tuple(_calibration_file(cfg, model, p) for p in others))


def _calibration_file(cfg: Config, model: ModelChoice, path: Path) -> CalibrationChoice:
    if not path.is_file():
        raise BadCalibration(
            "no calibration file",
            subject=path,
            hint="pass --calibration calibration.json (made by `cytoscreen calibrate` for this "
            "model), or --scores-only to screen without decisions",
        )
    cal = load_calibration(path)
    rule = rule_label(cfg.aggregation)
    if cal.model_id != model.model_id:
        raise BadCalibration(
            f"made for model {cal.model_id}, but the screen uses {model.model_id}", subject=path
        )
    if cal.rule != rule:
        raise BadCalibration(
            f"made for the aggregation rule {cal.rule}, the config says {rule}",
            subject=path,
            hint="set the aggregation section to the calibration's rule or recalibrate",
        )
    return CalibrationChoice(path.resolve(), file_sha256(path), cal)


# ---------------------------------------------------------------- the domain check's I/O


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
