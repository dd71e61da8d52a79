"""Model factory (timm by name, never downloading weights); the card lives in ``card``."""

from __future__ import annotations

import timm
import torch

from cytoscreen.scoring.card import ModelCard, Preprocessing

GLOBAL_POOLS = ("avg", "max", "avgmax")


def create_model(arch: str, num_classes: int, global_pool: str = "avg") -> torch.nn.Module:
    """Build a timm model by name with random weights (``pretrained=False``: no downloads).

    ``global_pool``: how the last feature map becomes one vector. ``avg`` (timm's default)
    averages every position; ``max`` keeps the strongest response anywhere, which suits a
    label that says "at least one abnormal cell somewhere in the patch"; ``avgmax`` averages
    the two. The pooling has no weights, so pretrained weights load under any of them."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not timm.is_model(arch.split(".")[0]):
        raise ValueError(f"unknown timm architecture {arch!r}; see timm.list_models()")
    if global_pool not in GLOBAL_POOLS:
        raise ValueError(f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r}")
    return timm.create_model(
        arch, pretrained=False, num_classes=num_classes, global_pool=global_pool
    )


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
