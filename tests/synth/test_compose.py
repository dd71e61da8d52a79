from __future__ import annotations

import numpy as np
import pytest

from cytoscreen.synth.compose import (
    cell_alpha,
    composite,
    estimate_background,
    od_to_rgb,
    rgb_to_od,
)

GLASS = np.array([230.0, 225.0, 235.0])


def _crop() -> np.ndarray:
    """A glass crop with a dark disc at the centre and an unrelated blob in a corner."""
    yy, xx = np.mgrid[0:100, 0:100]
    od = np.zeros((100, 100, 3))
    od[np.hypot(yy - 50, xx - 50) < 15] = (0.6, 0.8, 0.3)
    od[np.hypot(yy - 8, xx - 90) < 6] = (0.5, 0.5, 0.5)
    return od_to_rgb(od, GLASS)


def test_background_is_the_crops_own_glass() -> None:
    np.testing.assert_allclose(estimate_background(_crop()), GLASS, atol=1.5)


def test_od_roundtrip() -> None:
    rgb = np.random.default_rng(0).integers(20, 230, (8, 8, 3)).astype(np.uint8)
    back = od_to_rgb(rgb_to_od(rgb, GLASS), GLASS)
    assert np.abs(back.astype(int) - rgb).max() <= 1


def test_cell_alpha_keeps_the_central_cell_only() -> None:
    od, alpha = cell_alpha(_crop())
    assert alpha[50, 50] > 0.95 and od[50, 50, 1] == pytest.approx(0.8, abs=0.02)
    assert alpha[8, 90] < 0.05  # the corner blob is another object
    assert alpha[50, 80] < 0.05  # glass
    assert alpha[0, 0] == 0.0 and alpha[99, 99] == 0.0  # the square border never shows


def test_composite_adds_optical_density_beer_lambert() -> None:
    od, alpha = cell_alpha(_crop())
    one = composite(np.zeros((200, 200, 3), np.float32), od, alpha, 40, 40)
    two = composite(one.copy(), od, alpha, 50, 40)  # overlaps the first by 90 px
    np.testing.assert_allclose(two[90, 90], one[90, 90] + (od * alpha[..., None])[50, 40])
    assert od_to_rgb(two)[90, 95].mean() < od_to_rgb(one)[90, 95].mean()  # overlap is darker


def test_composite_clips_at_canvas_edges() -> None:
    od, alpha = cell_alpha(_crop())
    canvas = composite(np.zeros((60, 60, 3), np.float32), od, alpha, -50, -50, gain=(1, 2, 1))
    np.testing.assert_allclose(canvas[0, 0], (od * alpha[..., None])[50, 50] * (1, 2, 1))
    assert canvas[20:, 20:].max() == 0.0
