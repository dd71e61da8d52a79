"""The model card and the checkpoint's files, without torch (cheap to import).

A checkpoint is a directory with ``weights.safetensors`` and ``card.json``. Everything that only
reads the card or checks the weights' digest lives here, so that a run which never needs
PyTorch (OpenVINO scoring from a cached graph) does not import it.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import cytoscreen
from cytoscreen.errors import BadCheckpoint
from cytoscreen.fsutil import file_sha256
from cytoscreen.stats import Proportion
from cytoscreen.types import Precision

MemoryFormat = Literal["contiguous", "channels_last"]
# the model shipped inside the package (package data, never a path outside the package)
BUNDLED_MODEL_DIR = Path(str(resources.files("cytoscreen") / "models" / "default"))
WEIGHTS_NAME = "weights.safetensors"
CARD_NAME = "card.json"


class Preprocessing(BaseModel):
    """How pixels become a tensor: read from the model itself, not from constants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: tuple[int, int, int]  # (channels, height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"


class Metric(BaseModel):
    """A measured value with its 95% confidence interval and the count it rests on.

    card.json's layout of a figure. A proportion is a :class:`cytoscreen.stats.Proportion`
    written through :meth:`of` (its k is not kept); one over nothing (n = 0) is not measured
    and has value and interval None (null), never NaN."""

    model_config = ConfigDict(extra="forbid")

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    method: str = ""

    @classmethod
    def of(cls, p: Proportion) -> Metric:
        """A proportion in the card's layout."""
        return cls(value=p.value, ci_low=p.lower, ci_high=p.upper, n=p.n, method=p.method)

    def text(self, *, brackets: bool = False) -> str:
        """``value (95% CI low-high, n=N)`` (for a console, ``value [low, high] n=N``), or
        that it was not measured."""
        v, lo, hi = self.value, self.ci_low, self.ci_high
        if v is None or lo is None or hi is None:
            return f"not measured (n={self.n})"
        if brackets:
            return f"{v:.3f} [{lo:.3f}, {hi:.3f}] n={self.n}"
        return f"{v:.3f} (95% CI {lo:.3f}-{hi:.3f}, n={self.n})"


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
    global_pool: Literal["avg", "max", "avgmax"] = "avg"  # timm's pooling before the head
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
    # measured once on the held-out test fields (``cytoscreen evaluate``), after calibration
    test: dict[str, Metric] = Field(default_factory=dict)
    test_by_category: dict[str, dict[str, float | int]] = Field(default_factory=dict)
    test_notes: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def model_id(self) -> str:
        """Stable name of this checkpoint: architecture plus the weights' hash prefix."""
        return f"{self.arch}-{self.weights_sha256[:12]}" if self.weights_sha256 else self.arch

    def positive_indices(self) -> list[int]:
        return [self.classes.index(c) for c in self.positive_classes]


def read_card(model_dir: str | Path) -> ModelCard:
    path = Path(model_dir) / CARD_NAME
    try:
        return ModelCard.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadCheckpoint(f"no {CARD_NAME} in the model directory", subject=model_dir) from None
    except ValidationError as exc:
        raise BadCheckpoint(f"{CARD_NAME} is not a valid model card: {exc}", subject=path) from None


def checked_weights(model_dir: str | Path, card: ModelCard, *, verify_hash: bool = True) -> Path:
    """The weights file of ``model_dir``; raises BadCheckpoint when it is missing or its sha256
    differs from the card's."""
    weights = Path(model_dir) / WEIGHTS_NAME
    if not weights.is_file():
        raise BadCheckpoint(f"no {WEIGHTS_NAME} in the model directory", subject=model_dir)
    if verify_hash and card.weights_sha256 and file_sha256(weights) != card.weights_sha256:
        raise BadCheckpoint("weights file does not match the sha256 in its card", subject=weights)
    return weights
