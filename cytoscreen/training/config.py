"""Training configuration (configs/train/*.yaml), validated; unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cytoscreen.errors import ConfigError


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
    """Patches cut from generated slides (cytoscreen.training.slide_patches)."""

    manifests: list[str] = []  # manifest.csv of slide sets made from the CRIC train cells
    cache_dir: str = ".cytoscreen-cache/training-slides"  # their patch stores
    max_negative: int | None = Field(40, ge=0)  # NILM patches kept per slide (None: all)
    val_fraction: float = Field(0.2, ge=0, lt=1)  # share of slides held out for validation


class TrainConfig(_Section):
    arch: str = "efficientnet_lite0"
    pretrained: Literal["none", "imagenet"] = "imagenet"
    classes: list[str] = ["negative", "abnormal"]
    positive_classes: list[str] = ["abnormal"]
    patch_px: int = Field(224, ge=32, le=1024)
    mpp: float = Field(0.5, gt=0)  # um/px of the rendered patches
    crop_mpp: float = Field(0.25, gt=0)  # assumed um/px of the CRIC crops (not recorded)
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    balance: Literal["sampler", "loss", "none"] = "sampler"
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    num_workers: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    # time budget: the LR schedule runs over min(epochs, budget) and training stops at it
    max_minutes: float | None = Field(None, gt=0)
    limit_train: int | None = Field(None, ge=1)  # smoke runs: use this many training items
    limit_val: int | None = Field(None, ge=1)
    neighbour_p: tuple[float, float, float, float] = (0.4, 0.25, 0.2, 0.15)  # 0-3 NILM cells
    empty_p: float = Field(0.3, ge=0, le=1)  # near-empty crop drawn as an empty patch
    augment: AugmentConfig = AugmentConfig()
    # weights to start from: a model folder (weights.safetensors + card.json) or ImageNet
    init: str | None = None
    slides: SlideSource = SlideSource()
    # share of each epoch's draws per source kind ("cric", "slides", "review"); each kind is
    # label-balanced within its share. None: balance labels over all examples together
    mix: dict[str, float] | None = None


def load_train_config(path: str | Path | None = None, **overrides: object) -> TrainConfig:
    data: dict[str, object] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read training config: {exc}", slide=path) from None
        if not isinstance(loaded, dict):
            raise ConfigError("training config must be a mapping", slide=path)
        data = loaded
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(
            "invalid training config:\n" + "\n".join(lines),
            slide=path or "defaults",
            hint="see configs/train/default.yaml for the valid keys",
        ) from None
