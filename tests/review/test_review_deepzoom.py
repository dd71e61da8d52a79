"""Deep Zoom tile maths and tiles read through the project's reader."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cytoscreen.io import open_slide
from cytoscreen.review import deepzoom as dz


@pytest.mark.parametrize(("w", "h", "top"), [(1, 1, 0), (2, 1, 1), (1400, 1000, 11), (1024, 3, 10)])
def test_max_level(w: int, h: int, top: int) -> None:
    assert dz.max_level(w, h) == top
    assert dz.level_size(w, h, top) == (w, h)
    assert dz.level_size(w, h, 0) == (1, 1)


def test_tiles_cover_each_level_exactly_once() -> None:
    w, h = 1400, 1000
    for level in range(dz.max_level(w, h) + 1):
        lw, lh = dz.level_size(w, h, level)
        cols, rows = dz.tile_count(w, h, level)
        boxes = [dz.tile_box(w, h, level, c, r) for c in range(cols) for r in range(rows)]
        assert sum(b.width * b.height for b in boxes) == lw * lh
        assert all(0 < b.width <= dz.TILE and 0 < b.height <= dz.TILE for b in boxes)
    with pytest.raises(ValueError, match="outside"):
        dz.tile_box(w, h, 11, 6, 0)


def test_tile_pixels_match_the_slide(review_slide: Path) -> None:
    with open_slide(review_slide) as reader:
        top = dz.max_level(*reader.meta.dimensions)
        box = dz.tile_box(1400, 1000, top, 1, 0)  # full resolution, x 256..511
        tile = np.asarray(Image.open(io.BytesIO(dz.render_tile(reader, box, quality=95))))
        direct = reader.read_region((256, 0), 0, (256, 256))
        assert tile.shape == (256, 256, 3)
        assert np.abs(tile.astype(int) - direct.astype(int)).mean() < 12  # JPEG only
        low = dz.tile_box(1400, 1000, top - 3, 0, 0)  # 1/8: the whole slide in one tile
        small = Image.open(io.BytesIO(dz.render_tile(reader, low)))
        assert small.size == (175, 125)
