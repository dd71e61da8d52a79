"""Checkpoints: safetensors weights + a JSON model card in one directory. Nothing is unpickled."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cytoscreen.errors import BadCheckpoint
from cytoscreen.fsutil import file_sha256
from cytoscreen.scoring.card import (
    CARD_NAME,
    WEIGHTS_NAME,
    ModelCard,
    checked_weights,
    read_card,
)
from cytoscreen.scoring.model import create_model

__all__ = [
    "CARD_NAME",
    "WEIGHTS_NAME",
    "StateDiff",
    "diff_state",
    "load_checkpoint",
    "load_state_checked",
    "read_card",
    "save_checkpoint",
]


@dataclass
class StateDiff:
    """How a state dict differs from what a model expects."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)  # "key: got (a, b), want (c, d)"

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shape_mismatch)

    def describe(self, limit: int = 8) -> str:
        parts = []
        for name, items in (
            ("missing keys", self.missing),
            ("unexpected keys", self.unexpected),
            ("shape mismatches", self.shape_mismatch),
        ):
            if items:
                more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
                parts.append(f"{len(items)} {name}: {', '.join(items[:limit])}{more}")
        return "; ".join(parts)


def diff_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> StateDiff:
    want = model.state_dict()
    diff = StateDiff(
        missing=sorted(set(want) - set(state)),
        unexpected=sorted(set(state) - set(want)),
    )
    for key in sorted(set(want) & set(state)):
        if tuple(want[key].shape) != tuple(state[key].shape):
            diff.shape_mismatch.append(
                f"{key}: got {tuple(state[key].shape)}, want {tuple(want[key].shape)}"
            )
    return diff


def load_state_checked(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str | Path
) -> None:
    """Load ``state`` strictly; any difference raises BadCheckpoint naming ``source``."""
    diff = diff_state(model, state)
    if diff:
        raise BadCheckpoint(
            f"weights do not fit {type(model).__name__}: {diff.describe()}", subject=source
        )
    model.load_state_dict(dict(state), strict=True)


def save_checkpoint(model: torch.nn.Module, card: ModelCard, out_dir: str | Path) -> ModelCard:
    """Write weights (safetensors) then the card (with the weights' sha256). Returns the card."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    weights = out / WEIGHTS_NAME
    save_file(state, str(weights), metadata={"arch": card.arch})
    card = card.model_copy(update={"weights_sha256": file_sha256(weights)})
    (out / CARD_NAME).write_text(card.model_dump_json(indent=2), encoding="utf-8")
    return card


def load_checkpoint(
    model_dir: str | Path,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    verify_hash: bool = True,
) -> tuple[torch.nn.Module, ModelCard]:
    """Rebuild the model named by the card and load its weights (eval mode, CPU).

    ``arch``/``num_classes``, when given, are what the caller expects: a checkpoint for another
    architecture or class count raises BadCheckpoint listing what does not match.
    """
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    wanted = []
    if arch is not None and arch != card.arch:
        wanted.append(f"architecture is {card.arch}, expected {arch}")
    if num_classes is not None and num_classes != card.num_classes:
        wanted.append(f"{card.num_classes} classes {card.classes}, expected {num_classes}")
    weights = checked_weights(model_dir, card, verify_hash=verify_hash)
    model = create_model(arch or card.arch, num_classes or card.num_classes, card.global_pool)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise BadCheckpoint(f"cannot read safetensors weights: {exc}", subject=weights) from None
    diff = diff_state(model, state)
    if wanted or diff:
        detail = "; ".join(wanted + ([diff.describe()] if diff else []))
        raise BadCheckpoint(f"checkpoint does not match: {detail}", subject=model_dir)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, card
