"""Validated settings of the slide stage: aggregation, suspicious fields, triage.

These are the sections ``aggregation``, ``fields`` and ``triage`` of the configuration; they
are plain pydantic models (unknown keys are errors) so ``cytoscreen.config`` can embed them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RuleName = Literal["max", "top_k_mean", "noisy_or", "count_over", "learned"]
Preparation = Literal["liquid", "conventional"]
PREPARATION_NAMES: dict[str, str] = {
    "liquid": "liquid-based preparation",
    "conventional": "conventional smear",
}


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AggregationSettings(_Settings):
    """How patch probabilities become one slide score."""

    rule: RuleName = "top_k_mean"
    top_k: int = Field(10, ge=1)  # top_k_mean: mean of the k most suspicious patches
    patch_threshold: float = Field(0.5, ge=0.0, le=1.0)  # count_over: a patch counts at >= this
    noisy_or_top_k: int | None = Field(None, ge=1)  # noisy_or over the k best patches; None = all


class FieldSettings(_Settings):
    """How high-scoring patches are grouped into ranked, field-of-view sized fields."""

    min_score: float = Field(0.5, ge=0.0, le=1.0)  # patches at >= this may form a field
    max_fields: int = Field(20, ge=1, le=10_000)  # keep the N best fields
    merge_gap_px: float = Field(1.0, ge=0.0)  # level-0 px gap still counted as touching


class TriageSettings(_Settings):
    """When a slide cannot be assessed at all.

    Cellularity follows Bethesda: at least ``min_cells_liquid`` well-preserved squamous cells on
    a liquid-based preparation, ``min_cells_conventional`` on a conventional smear; which one
    applies is ``preparation``, a setting of the run. ``min_cellularity`` is the minimum in
    force: left unset (None) it is the preparation's minimum; set, it overrides both (tests,
    demo slides smaller than a preparation). A slide whose estimated obscured share exceeds
    ``max_obscured_share`` is not assessable either.
    """

    preparation: Preparation = "liquid"
    min_cells_liquid: int = Field(5000, ge=0)  # Bethesda 2014: liquid-based preparation
    min_cells_conventional: int = Field(8000, ge=0)  # Bethesda 2014: conventional smear
    min_cellularity: int = Field(5000, ge=0)  # the minimum in force (see the class docstring)
    # expected relative error of the nucleus count (scripts/bench_cellularity.py: median
    # absolute error of the count against the reference on generated slides); a count within
    # this share of the minimum says so in the slide's reasons
    cellularity_error: float = Field(0.09, ge=0.0, le=1.0)
    max_unreadable_share: float = Field(0.05, ge=0.0, le=1.0)  # of the slide's patches
    # largest robust z-distance of the slide's stain/colour profile from the model's domain
    # reference (domain.json); None = measured and recorded but not checked. 6: every generated
    # Pap slide measured stays below 4, every off-domain kind but colour-channel swaps above 7.8
    max_domain_shift: float | None = Field(6.0, ge=0.0)
    # Bethesda: more than 75% of the squamous cells obscured (blood, inflammation, thick areas)
    # is unsatisfactory. The share is estimated on the foreground view
    # (cytoscreen.tiling.obscured: blood and thick overlap); None = recorded but not checked
    max_obscured_share: float | None = Field(0.75, ge=0.0, le=1.0)
    # Bethesda: abnormal cells make a specimen satisfactory; a scanty or mostly obscured slide
    # that scores at/above the threshold goes to review instead of not assessable
    abnormal_overrides_cellularity: bool = True

    @model_validator(mode="before")
    @classmethod
    def _minimum_of_the_preparation(cls, data: Any) -> Any:
        """An unset ``min_cellularity`` becomes the minimum of the preparation type."""
        if not isinstance(data, dict) or data.get("min_cellularity") is not None:
            return data
        prep = data.get("preparation", "liquid")
        key = "min_cells_conventional" if prep == "conventional" else "min_cells_liquid"
        default = cls.model_fields[key].default
        return {**data, "min_cellularity": data.get(key, default)}

    @property
    def preparation_name(self) -> str:
        return PREPARATION_NAMES[self.preparation]
