"""The model as one pixels-in, probabilities-out graph, for runtimes other than PyTorch.

``ProbabilityModel`` puts the card's normalisation and the softmax inside the network, so an
exported graph takes the cache's uint8 (N, H, W, 3) patches as they are and returns the
softmax per class: nothing about preprocessing has to be repeated outside PyTorch.
"""

from __future__ import annotations

import torch

from cytoscreen.scoring.card import ModelCard, Preprocessing


class ProbabilityModel(torch.nn.Module):
    """uint8 NHWC pixels -> softmax per class (float32), normalised as ``Normaliser`` does."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: torch.nn.Module, prep: Preprocessing) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(prep.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(prep.std).view(1, 3, 1, 1) * 255.0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.permute(0, 3, 1, 2).float() - self.mean) / self.std
        return torch.softmax(self.model(x).float(), dim=1)


def example_pixels(card: ModelCard, n: int = 2) -> torch.Tensor:
    _, h, w = card.preprocessing.input_size
    return torch.zeros(n, h, w, 3, dtype=torch.uint8)
