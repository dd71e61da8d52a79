"""Model factory (timm by name, never downloading weights) and the model card."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import timm
import torch
from pydantic import BaseModel, ConfigDict, Field

import cytoscreen

Precision = Literal["fp32", "bf16", "fp16"]
MemoryFormat = Literal["contiguous", "channels_last"]


def create_model(arch: str, num_classes: int) -> torch.nn.Module:
    """Build a timm model by name with random weights (``pretrained=False``: no downloads)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not timm.is_model(arch.split(".")[0]):
        raise ValueError(f"unknown timm architecture {arch!r}; see timm.list_models()")
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


class Preprocessing(BaseModel):
    """How pixels become a tensor: read from the model itself, not from constants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: tuple[int, int, int]  # (channels, height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"


def preprocessing_of(model: torch.nn.Module, input_px: int | None = None) -> Preprocessing:
    """Mean/std/interpolation from timm's data config; ``input_px`` overrides the input size
    (CNNs take any size: the card records the patch size the model was trained on)."""
    cfg = timm.data.resolve_model_data_config(model)
    c, h, w = cfg["input_size"]
    if input_px is not None:
        h = w = input_px
    mean = tuple(float(v) for v in cfg["mean"])
    std = tuple(float(v) for v in cfg["std"])
    return Preprocessing(
        input_size=(int(c), int(h), int(w)),
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        interpolation=str(cfg.get("interpolation", "bilinear")),
    )


class Metric(BaseModel):
    """A measured value with its 95% confidence interval and the count it rests on."""

    model_config = ConfigDict(extra="forbid")

    value: float
    ci_low: float
    ci_high: float
    n: int
    method: str = ""


class TrainingData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(default_factory=list)  # manifests / record lists used
    counts: dict[str, int] = Field(default_factory=dict)  # training examples per class
    validation_counts: dict[str, int] = Field(default_factory=dict)
    notes: str = ""


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    version = cytoscreen.__version__
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+g{commit}" if commit else version


class ModelCard(BaseModel):
    """Everything needed to use (and judge) a checkpoint; written as JSON beside the weights."""

    model_config = ConfigDict(extra="forbid")

    arch: str
    classes: list[str]
    positive_classes: list[str]  # the patch score is the summed probability of these classes
    preprocessing: Preprocessing
    mpp: float = 0.5  # um/px of the patches the model was trained on
    training: TrainingData = Field(default_factory=TrainingData)
    validation: dict[str, Metric] = Field(default_factory=dict)
    validation_by_category: dict[str, dict[str, float | int]] = Field(default_factory=dict)
    precision: Precision = "fp32"  # inference precision chosen for CPU
    memory_format: MemoryFormat = "channels_last"
    code_version: str = Field(default_factory=code_version)
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    weights_sha256: str = ""  # filled in by save_checkpoint
    attribution: str = ""
    notes: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def model_id(self) -> str:
        """Stable name of this checkpoint: architecture plus the weights' hash prefix."""
        return f"{self.arch}-{self.weights_sha256[:12]}" if self.weights_sha256 else self.arch

    def positive_indices(self) -> list[int]:
        return [self.classes.index(c) for c in self.positive_classes]


def new_card(
    model: torch.nn.Module,
    arch: str,
    classes: list[str],
    positive_classes: list[str],
    input_px: int | None = 224,
    **fields: object,
) -> ModelCard:
    """A card whose preprocessing is read from ``model``."""
    missing = [c for c in positive_classes if c not in classes]
    if missing:
        raise ValueError(f"positive classes {missing} are not among the classes {classes}")
    return ModelCard.model_validate(
        {
            "arch": arch,
            "classes": classes,
            "positive_classes": positive_classes,
            "preprocessing": preprocessing_of(model, input_px),
            **fields,
        }
    )
