"""Device, precision and memory-layout choices shared by inference and training."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import get_args

import numpy as np
import numpy.typing as npt
import torch

from cytoscreen.scoring.card import Preprocessing
from cytoscreen.types import Precision


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device, card_choice: Precision) -> Precision:
    """'auto': fp16 AMP on CUDA (bf16 where supported), the card's choice on CPU."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32" if card_choice == "fp16" else card_choice
    if precision == "int8":
        raise ValueError(
            "int8 runs only as the quantised OpenVINO graph: set scoring.runtime: openvino"
        )
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 is for CUDA; on CPU use bf16 or fp32")
    if precision not in get_args(Precision):
        raise ValueError(f"unknown precision {precision!r}")
    return precision  # type: ignore[return-value]


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def prepare_model(
    model: torch.nn.Module, device: torch.device, channels_last: bool = True
) -> torch.nn.Module:
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


class Normaliser:
    """uint8 NHWC pixels -> normalised float NCHW tensor on ``device``."""

    def __init__(
        self, prep: Preprocessing, device: torch.device, channels_last: bool = True
    ) -> None:
        self.device = device
        self.channels_last = channels_last
        self.mean = torch.tensor(prep.mean, device=device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(prep.std, device=device).view(1, 3, 1, 1) * 255.0

    def __call__(self, pixels: npt.NDArray[np.uint8] | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(pixels)
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        x = t.permute(0, 3, 1, 2).float()
        x = (x - self.mean) / self.std
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)
