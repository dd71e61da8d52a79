from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps

from cytoscreen.outputs.images import (
    FAINT_SHARE,
    HEAT_ALPHA,
    HEAT_CMAP,
    LEGEND_PX,
    heat_legend,
    overlay,
    score_raster,
)


def test_score_raster_paints_patches_and_keeps_the_higher_score_where_they_overlap() -> None:
    coords = np.array([[0, 0], [20, 0], [100, 100]])
    raster = score_raster([0.2, 0.9, np.nan], coords, size_l0=40, scale=10, shape=(20, 20))
    # patch 0 covers x 0-3, patch 1 x 2-5 (both y 0-3); the NaN patch paints nothing
    assert raster[0, 0] == pytest.approx(0.2)
    assert raster[0, 2] == pytest.approx(0.9) and raster[3, 5] == pytest.approx(0.9)
    assert np.isnan(raster[0, 6]) and np.isnan(raster[12, 12])


def test_overlay_leaves_unscored_pixels_and_makes_high_scores_more_opaque() -> None:
    thumb = np.full((2, 3, 3), 200, np.uint8)
    raster = np.array([[np.nan, 0.0, 1.0], [np.nan, 0.5, 1.0]], np.float32)
    out = overlay(thumb, raster)
    assert (out[:, 0] == 200).all()  # no patch: the slide as it is
    for score, px in ((0.0, out[0, 1]), (1.0, out[0, 2])):
        a = HEAT_ALPHA * (FAINT_SHARE + (1 - FAINT_SHARE) * score)
        colour = np.asarray(colormaps[HEAT_CMAP](score)[:3]) * 255
        np.testing.assert_allclose(px, 200 * (1 - a) + colour * a, atol=1)
    assert np.abs(out[0, 2].astype(int) - 200).sum() > np.abs(out[0, 1].astype(int) - 200).sum()
    with pytest.raises(ValueError, match="does not match"):
        overlay(thumb, raster[:, :2])


def test_heat_legend_shows_the_scale_and_marks_the_threshold() -> None:
    plain = heat_legend(400)
    marked = heat_legend(400, threshold=0.73)
    assert plain.shape == marked.shape == (LEGEND_PX, 400, 3)
    # the colour ramp runs from the colour map's 0 to its 1 along the bar
    left, right = plain[20, 9], plain[20, 390]
    np.testing.assert_allclose(left, np.asarray(colormaps[HEAT_CMAP](0.0)[:3]) * 255, atol=12)
    np.testing.assert_allclose(right, np.asarray(colormaps[HEAT_CMAP](1.0)[:3]) * 255, atol=12)
    # the threshold adds a black marker on the bar near x = 8 + 0.73 * 383
    x = round(8 + 0.73 * 383)
    diff = np.abs(marked.astype(int) - plain.astype(int)).sum(axis=2)
    assert diff[16:26, x - 2 : x + 3].max() > 100
    assert diff[16:26, :100].max() == 0  # the rest of the bar is untouched
    assert not (heat_legend(400, threshold=float("nan")) != plain).any()
