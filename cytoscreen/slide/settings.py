"""Validated settings of the slide stage: aggregation, suspicious fields, triage.

These are the sections ``aggregation``, ``fields`` and ``triage`` of the configuration; they
are plain pydantic models (unknown keys are errors) so ``cytoscreen.config`` can embed them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RuleName = Literal["max", "top_k_mean", "noisy_or", "count_over", "learned"]


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
    """When a slide cannot be assessed at all."""

    min_cellularity: int = Field(5000, ge=0)  # Bethesda LBP adequacy: >= 5,000 squamous cells
    max_unreadable_share: float = Field(0.05, ge=0.0, le=1.0)  # of the slide's patches
    # largest robust z-distance of the slide's stain/colour profile from the model's domain
    # reference (domain.json); None = measured and recorded but not checked. 6: every generated
    # Pap slide measured stays below 4, every off-domain kind but colour-channel swaps above 7.8
    max_domain_shift: float | None = Field(6.0, ge=0.0)
    abnormal_overrides_cellularity: bool = True  # Bethesda: abnormal cells make it satisfactory
