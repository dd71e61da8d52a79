"""The calibration record (calibration.json): what threshold, chosen how, on what, how sure.

The only module of ``cytoscreen.slide`` that touches files.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from cytoscreen.errors import BadCalibration
from cytoscreen.slide.learned import LearnedRule
from cytoscreen.stats import Proportion
from cytoscreen.types import SCORING_KEYS, scoring_kind

# how the target sensitivity is held on the calibration set: as the sensitivity measured there
# ("point") or as its exact lower bound ("lower_bound": the set must show it with confidence)
TargetAt = Literal["point", "lower_bound"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _measured(p: Proportion) -> Proportion:
    if not p.measured:
        raise ValueError("a figure over no slide is written as null, not as 0 of 0")
    return p


# A figure of the record: always measured (n >= 1); a field that may lack one is
# ``Measured | None``, None standing for the not-measured proportion (see cytoscreen.stats).
Measured = Annotated[Proportion, AfterValidator(_measured)]


class StratumFigures(_Record):
    """Sensitivity and specificity at the threshold within one stratum (None: no such slide)."""

    sensitivity: Measured | None = None
    specificity: Measured | None = None


class ScoreReference(_Record):
    """The calibration negatives' patch-score statistics (``slide.applicability``): median and
    robust spread of each, their range, and the largest |z| still called applicable."""

    centre: dict[str, float]
    spread: dict[str, float]
    minimum: dict[str, float]
    maximum: dict[str, float]
    n_slides: int = Field(ge=1)
    limit: float = Field(gt=0.0)
    source: str
    # the fewest scored patches of any calibration slide (positives included): a smaller slide
    # is smaller than every slide the threshold was measured on (None: not recorded)
    min_patches: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> ScoreReference:
        keys = set(self.centre)
        if not keys or any(set(d) != keys for d in (self.spread, self.minimum, self.maximum)):
            raise ValueError("the score reference's statistics do not match")
        if any(v <= 0 for v in self.spread.values()):
            raise ValueError("score reference spreads must be positive")
        return self


def _cpu_fp32(used: dict[str, str]) -> bool:
    """Scores made in fp32 on the CPU (PyTorch or OpenVINO): one kind for a threshold, since an
    OpenVINO fp32 engine is only built when it matches PyTorch fp32 on the CPU to 1e-3 on its
    check patches (``scoring.openvino_engine.SELF_CHECK_ATOL``; ~1e-5 measured)."""
    return used.get("precision") == "fp32" and str(used.get("device", "")).startswith("cpu")


class Calibration(_Record):
    """A slide threshold with the evidence for it. Slides scoring >= threshold go to review."""

    format: Literal[1] = 1
    threshold: float
    target_sensitivity: float = Field(gt=0.0, le=1.0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    sensitivity: Measured
    specificity: Measured | None  # None: no negative slides in the set
    tp: int = Field(ge=0)
    fn: int = Field(ge=0)
    tn: int = Field(ge=0)
    fp: int = Field(ge=0)
    set_aside_share: float = Field(ge=0.0, le=1.0)  # NEGATIVE slides / all slides
    n_slides: int = Field(ge=1)
    n_unscorable: int = Field(ge=0)  # score None: excluded from the figures, NOT_ASSESSABLE
    n_unscorable_positive: int = Field(ge=0)
    data_source: str
    model_id: str
    rule: str
    created: datetime
    package_version: str
    warnings: tuple[str, ...] = ()
    learned: LearnedRule | None = None
    # how the scores it was derived from were made ({"runtime": ..., "precision": ...}); None in
    # files written before this was recorded
    scoring: dict[str, str] | None = None
    # the figures within each stratum of each grouping the calibration set was drawn over
    # (e.g. {"n_abnormal": {"1": ..., "2-3": ...}, "prep": {...}}); the threshold is chosen so
    # the target holds in every stratum
    strata: dict[str, dict[str, StratumFigures]] = Field(default_factory=dict)
    # the calibration negatives' patch-score statistics: a slide unlike them is never called
    # negative (None in files written before it was recorded: the check is skipped)
    applicability: ScoreReference | None = None
    # "point" in files written before this was recorded
    target_at: TargetAt = "point"

    def scoring_differs(self, used: dict[str, str]) -> str | None:
        """Why scores made as ``used`` (a Scorer.describe()) may not fit this threshold: the
        runtime or precision differs from the calibration's; None when they match or the
        calibration does not record them."""
        if self.scoring is None or scoring_kind(self.scoring) == scoring_kind(used):
            return None
        if _cpu_fp32(used) and scoring_kind(self.scoring) == ("openvino", "fp32"):
            return None  # the OpenVINO fp32 engine is refused unless it matches PyTorch fp32
        made = " ".join(str(self.scoring.get(k)) for k in SCORING_KEYS)
        now = " ".join(str(used.get(k)) for k in SCORING_KEYS)
        return (
            f"the threshold was calibrated on {made} scores but this run scored with {now}: "
            "scores can shift between runtimes and precisions, so the threshold may not hold "
            "(recalibrate with `cytoscreen calibrate` on slides screened this way, or score as "
            "the calibration did)"
        )

    @model_validator(mode="after")
    def _consistent(self) -> Calibration:
        if (self.tp, self.tp + self.fn) != (self.sensitivity.k, self.sensitivity.n):
            raise ValueError("tp/fn do not match the sensitivity")
        spec = self.specificity
        n_neg = self.tn + self.fp
        if (spec is None and n_neg) or (spec is not None and (spec.k, spec.n) != (self.tn, n_neg)):
            raise ValueError("tn/fp do not match the specificity")
        if self.tp + self.fn + self.tn + self.fp + self.n_unscorable != self.n_slides:
            raise ValueError("the counts do not add up to n_slides")
        if self.rule.startswith("learned") != (self.learned is not None):
            raise ValueError("the learned rule needs its coefficients (and only it has them)")
        return self


def save_calibration(calibration: Calibration, path: str | Path) -> Path:
    """Write ``calibration`` as indented JSON; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(calibration.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return target


def load_calibration(path: str | Path) -> Calibration:
    """Read and validate a calibration.json; any problem is a :class:`BadCalibration`."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadCalibration("calibration file not found", subject=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadCalibration(f"cannot read the calibration file ({exc})", subject=source) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadCalibration(f"not valid JSON ({exc})", subject=source) from None
    try:
        return Calibration.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        )
        raise BadCalibration(f"invalid calibration record: {problems}", subject=source) from None
