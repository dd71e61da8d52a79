"""Frozen value types passed between the pipeline stages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

# The vocabularies of the settings, each spelled here once and imported everywhere else.
# A "...Setting" is what a config key or a command-line flag accepts ("auto" lets the code
# choose); the bare name is what was chosen.
BackendName = Literal["openslide", "tiffslide", "wsidicom"]  # the reader that opened a slide
BackendSetting = Literal["auto", BackendName]  # reader.backend, --backend
Precision = Literal["fp32", "bf16", "fp16", "int8"]  # the arithmetic a model runs in
# int8: a quantised OpenVINO graph shipped beside the weights (OpenVINO on the CPU only)
PrecisionSetting = Literal["auto", Precision]  # scoring.precision, --precision
Runtime = Literal["torch", "openvino"]  # the inference runtime that scores patches
RuntimeSetting = Literal["auto", Runtime]  # scoring.runtime, --runtime
DeviceSetting = Literal["auto", "cpu", "cuda"]  # scoring.device
BACKENDS: tuple[str, ...] = get_args(BackendSetting)
PRECISIONS: tuple[str, ...] = get_args(PrecisionSetting)
RUNTIMES: tuple[str, ...] = get_args(RuntimeSetting)
DEVICES: tuple[str, ...] = get_args(DeviceSetting)

MPP_MIN = 0.05
MPP_MAX = 20.0
# relative mpp difference taken as the same resolution: a pyramid level read as-is, patches
# or a config that match the model card (tiling.level_tolerance defaults to it)
MPP_TOLERANCE = 0.02


def mpp_differs(mpp: float, reference: float, tolerance: float = MPP_TOLERANCE) -> bool:
    """Whether ``mpp`` is another resolution than ``reference`` (relative difference above
    ``tolerance``)."""
    return abs(mpp - reference) > tolerance * reference


# what makes two sets of patch scores of one model the same kind (Scorer.describe() keys)
SCORING_KEYS = ("runtime", "precision")


def scores_key(model_id: str, how: Any = None) -> str:
    """Where a store keeps one model's scores made as ``how`` (a ``Scorer.describe()``, or as
    recorded with results): fp32 (or unrecorded) scores under the model id, another precision
    beside them under ``<model_id>.<precision>``, so that scoring a slide in bf16 keeps its fp32
    scores (and the calibration made on them) instead of replacing them."""
    precision = how.get("precision") if isinstance(how, Mapping) else None
    return model_id if precision in (None, "", "fp32") else f"{model_id}.{precision}"


def scoring_kind(how: Any) -> tuple[str, ...] | None:
    """(runtime, precision) of a scoring record (``Scorer.describe()``, or as stored with scores,
    results and calibrations); None when it does not record both."""
    if not isinstance(how, Mapping) or not all(how.get(k) for k in SCORING_KEYS):
        return None
    return tuple(str(how[k]) for k in SCORING_KEYS)


@dataclass(frozen=True)
class SlideMeta:
    """What a reader knows about a slide. Holds no patient-identifying vendor fields."""

    backend: BackendName
    vendor: str
    dimensions: tuple[int, int]  # level 0 (width, height) in pixels
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp_x: float  # micrometres per level-0 pixel
    mpp_y: float
    mpp_source: Literal["slide", "override"] = "slide"
    objective_power: float | None = None

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def mpp(self) -> float:
        """Mean level-0 resolution in micrometres per pixel."""
        return (self.mpp_x + self.mpp_y) / 2.0

    def level_mpp(self, level: int) -> float:
        return self.mpp * self.level_downsamples[level]


@dataclass(frozen=True)
class PatchGrid:
    """Patches of ``patch_px`` x ``patch_px`` pixels at ``target_mpp``.

    ``coords`` are the level-0 (x, y) of each patch's top-left corner; a patch covers
    ``size_l0`` level-0 pixels per side (a float: the ratio of resolutions need not be whole).
    """

    coords: npt.NDArray[np.int64]  # (N, 2) level-0 x, y
    foreground: npt.NDArray[np.float32]  # (N,) fraction of the patch that is cell-bearing
    patch_px: int
    target_mpp: float
    size_l0: float
    stride_l0: float
    block_ids: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )  # (N,) read block of each patch (patches sorted by block)

    def __len__(self) -> int:
        return int(self.coords.shape[0])


class Outcome(StrEnum):
    """A slide's triage outcome. NOT_ASSESSABLE is never reported as NEGATIVE."""

    NEGATIVE = "negative"  # below the calibrated threshold: may be set aside
    REVIEW = "review"  # at or above the threshold: a cytologist reads it, worst first
    NOT_ASSESSABLE = "not_assessable"  # too few cells, unreadable, wrong resolution, off-domain


@dataclass(frozen=True)
class SuspiciousField:
    """One ranked field of view: merged overlapping patches, boxed in level-0 pixels."""

    rank: int  # 1 = most suspicious
    score: float  # probability of abnormal of the field's best patch
    x0: int
    y0: int
    x1: int
    y1: int
    patch_indices: tuple[int, ...]  # indices into the slide's patch cache


@dataclass(frozen=True)
class SlideScore:
    """What the aggregator makes of one slide's patch scores."""

    score: float | None  # None when nothing could be scored
    rule: str  # aggregation rule and its parameters, e.g. "top_k_mean(k=10)"
    n_patches: int
    n_scored: int
    n_unreadable: int
    cellularity: int  # estimated squamous cells (nuclei counted in cell-bearing patches)
    fields: tuple[SuspiciousField, ...]
    # estimated share of the cell-bearing area under blood or thick overlap (0-1); None when
    # not measured (a patch cache made before the estimate) or the slide has no cell area
    obscured: float | None = None


@dataclass(frozen=True)
class TriageDecision:
    """A decision with its reasons: every outcome says why."""

    outcome: Outcome
    score: float | None
    threshold: float
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelledPatch:
    """A patch already at the model's resolution (RGB uint8, patch_px square) with its label:
    what review marks (``review.training``) and written slides give ``training``."""

    image: npt.NDArray[np.uint8]
    label: int
    group: str  # split unit: field / slide / review id
    category: str = ""
    source: str = "review"

    @property
    def kind(self) -> str:
        """The source kind (the part of ``source`` before ':'), the key of ``mix``."""
        return self.source.split(":", 1)[0]
