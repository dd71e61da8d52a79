"""PyTorch behind the Scorer: device, precision and memory layout chosen once, batches scored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from cytoscreen.scoring.card import ModelCard
from cytoscreen.scoring.runtime import (
    Normaliser,
    autocast,
    prepare_model,
    resolve_device,
    resolve_precision,
)
from cytoscreen.types import Precision


@dataclass
class TorchEngine:
    """A model on its device, in its precision: uint8 NHWC patches in, softmax per class out."""

    model: torch.nn.Module
    dev: torch.device
    precision: Precision
    norm: Normaliser

    @classmethod
    def build(
        cls,
        model: torch.nn.Module,
        card: ModelCard,
        device: str,
        precision: str,
        channels_last: bool = True,
    ) -> TorchEngine:
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev, card.precision)
        ready = prepare_model(model, dev, channels_last)
        return cls(ready, dev, prec, Normaliser(card.preprocessing, dev, channels_last))

    @property
    def device_name(self) -> str:
        return str(self.dev)

    def predict(self, pixels: npt.NDArray[np.uint8], batch_size: int) -> npt.NDArray[np.float32]:
        out = []
        with torch.inference_mode():
            for start in range(0, len(pixels), batch_size):
                x = self.norm(pixels[start : start + batch_size])
                with autocast(self.dev, self.precision):
                    logits = self.model(x)
                out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)
