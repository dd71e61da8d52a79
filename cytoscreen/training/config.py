"""Training configuration (configs/train/*.yaml), validated; unknown keys are errors. Read
and validated by the same functions as the screen config (``cytoscreen.config``), so both
report a bad file in one format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cytoscreen.config import read_yaml_config, validate_config
from cytoscreen.types import PrecisionSetting


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AugmentConfig(_Section):
    hflip: float = Field(0.5, ge=0, le=1)
    vflip: float = Field(0.5, ge=0, le=1)
    rotate90: float = Field(1.0, ge=0, le=1)
    colour_p: float = Field(0.8, ge=0, le=1)  # stain / colour variation
    hue_shift: int = Field(12, ge=0, le=90)
    sat_shift: int = Field(25, ge=0, le=100)
    val_shift: int = Field(15, ge=0, le=100)
    brightness: float = Field(0.15, ge=0, le=1)
    contrast: float = Field(0.15, ge=0, le=1)
    gamma: tuple[int, int] = (85, 115)
    blur_p: float = Field(0.3, ge=0, le=1)  # focus variation
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    jpeg_p: float = Field(0.3, ge=0, le=1)
    jpeg_quality: tuple[int, int] = (60, 95)
    scale_p: float = Field(0.5, ge=0, le=1)
    scale: tuple[float, float] = (0.9, 1.1)  # small magnification changes


class SlideSource(_Section):
    """Patches the tiler cut from written generated slides (training.slide_patches)."""

    # manifest.csv of slide sets made from the CRIC train fields (`cytoscreen make-slides`);
    # relative paths here are taken against train_model's root (the current directory)
    manifests: list[str] = []
    cache_dir: str = ".cytoscreen-cache/training-slides"  # their patch stores
    max_negative: int | None = Field(40, ge=0)  # NILM patches kept per slide (None: all)
    val_fraction: float = Field(0.2, ge=0, lt=1)  # share of slides held out for validation


class ContextSource(_Section):
    """Virtual slides of the train fields (cytoscreen.synth.patches): every training patch is
    a window of a realistic slide, a cell among its real neighbours."""

    n_negative: int = Field(16, ge=1)  # negative virtual slides (hard negatives)
    n_positive: int = Field(16, ge=1)  # positive virtual slides (abnormal cells in context)
    n_cells: int = Field(1500, ge=10)  # labelled cells per virtual slide
    n_abnormal: tuple[int, int] = (10, 60)  # abnormal cells per positive virtual slide
    positive_share: float = Field(0.5, gt=0, lt=1)  # share of positive windows per epoch
    val_slides: int = Field(8, ge=2)  # virtual slides of the val fields for validation windows
    val_windows: int = Field(600, ge=20)  # validation windows cut from them (half positive)
    # a positive training window holds its abnormal nucleus at least this far inside (um);
    # the screening grid cuts nuclei anywhere, so less than the label margin (synth.patches
    # .EDGE_UM, 6) trains on cut nuclei too; validation windows keep the margin
    positive_edge_um: float = Field(6.0, ge=0.0, le=20.0)
    # hard negatives: score this many negative windows of the train slides with the starting
    # model (``init``) and keep the ``hard_keep`` it scores highest as a source of their own
    # ("hard" in ``mix``); 0: none
    hard_pool: int = Field(0, ge=0)
    hard_keep: int = Field(0, ge=0)


class TrainConfig(_Section):
    arch: str = "efficientnet_lite0"
    pretrained: Literal["none", "imagenet"] = "imagenet"
    global_pool: Literal["avg", "max", "avgmax"] = "avg"  # max: "an abnormal cell anywhere"
    classes: list[str] = ["negative", "abnormal"]
    positive_classes: list[str] = ["abnormal"]
    patch_px: int = Field(224, ge=32, le=1024)
    mpp: float = Field(0.5, gt=0)  # um/px of the patches (the kit's 0.25 times a power of 2)
    epochs: int = Field(8, ge=1)
    epoch_size: int = Field(3000, ge=8)  # training windows drawn per epoch
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    val_fraction: float = Field(0.2, gt=0, lt=1)  # share of reviewed fields held out
    seed: int = 0
    precision: PrecisionSetting = "auto"
    channels_last: bool = True
    num_workers: int = Field(1, ge=0)
    threads: int | None = Field(None, ge=1)
    # time budget: the LR schedule runs over min(epochs, budget) and training stops at it
    max_minutes: float | None = Field(None, gt=0)
    limit_val: int | None = Field(None, ge=1)  # smoke runs: validate on this many cells
    context: ContextSource = ContextSource()
    augment: AugmentConfig = AugmentConfig()
    # weights to start from: a model folder (weights.safetensors + card.json) or ImageNet
    init: str | None = None
    slides: SlideSource = SlideSource()
    # share of each epoch's draws per source kind besides the virtual slides ("slides",
    # "review"); the rest are context windows. None: each kind present gets a quarter
    mix: dict[str, float] | None = None

    @field_validator("precision")
    @classmethod
    def _trainable(cls, v: str) -> str:
        if v == "int8":
            raise ValueError("training runs in fp32, bf16 or fp16 autocast; int8 is for scoring")
        return v


TRAIN_CONFIG = "training config"


def load_train_config(path: str | Path | None = None, **overrides: object) -> TrainConfig:
    data: dict[str, Any] = read_yaml_config(path, TRAIN_CONFIG) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate_config(
        TrainConfig,
        data,
        TRAIN_CONFIG,
        path or "defaults",
        "see configs/train/default.yaml for the valid keys",
    )
