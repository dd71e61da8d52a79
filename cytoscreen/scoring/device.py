"""Which kind of device will score, decided without importing torch where that is certain."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# what an NVIDIA (CUDA) or AMD (ROCm, which torch also calls "cuda") driver exposes on Linux
_GPU_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd")


def cuda_ruled_out() -> bool:
    """True when torch certainly sees no CUDA device here: CUDA_VISIBLE_DEVICES hides them
    all, or (on Linux) no GPU driver is loaded. False means "ask torch"."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return True
    if sys.platform.startswith("linux"):
        return not any(Path(p).exists() for p in _GPU_DRIVER_PATHS)
    return False


def device_type(device: str) -> str:
    """'cpu' or 'cuda' for a ``scoring.device`` setting (auto, cpu, cuda); imports torch only
    when a GPU might be there."""
    if device == "cpu" or (device == "auto" and cuda_ruled_out()):
        return "cpu"
    from cytoscreen.scoring.runtime import resolve_device

    return resolve_device(device).type
