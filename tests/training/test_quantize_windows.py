"""``training.quantize.calibration_windows``: what int8 is calibrated on (train fields only)."""

from __future__ import annotations

import numpy as np

from cytoscreen.synth.kit import bundled_kit
from cytoscreen.training.config import load_train_config
from cytoscreen.training.quantize import calibration_windows


def test_calibration_windows_are_model_sized_and_repeatable() -> None:
    cfg = load_train_config(None)
    kit = bundled_kit()
    windows, what = calibration_windows(kit, cfg, 6, seed=3)
    assert windows.shape == (6, cfg.patch_px, cfg.patch_px, 3) and windows.dtype == np.uint8
    assert "seed 3" in what and "train fields" in what
    again, _ = calibration_windows(kit, cfg, 6, seed=3)
    np.testing.assert_array_equal(windows, again)  # the shipped graph can be made again
