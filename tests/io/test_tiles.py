"""Direct tile reads: windows anywhere (white outside the page), and sparse reads that decode
only the tiles under the requested rectangles."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cytoscreen.io.tiles import TiledPage


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[tuple[TiledPage, np.ndarray, list[int]]]:
    """A 100 x 70 px page in 16 px tiles (lossless), the image, and a log of decoded tiles."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (70, 100, 3), dtype=np.uint8)
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, image, tile=(16, 16), photometric="rgb", compression="zlib")
    fd = os.open(path, os.O_RDONLY)
    try:
        with tifffile.TiffFile(path) as tif:
            tp = TiledPage(tif.pages[0], fd)
            decoded: list[int] = []
            tile = tp.tile
            tp.tile = lambda i: (decoded.append(i), tile(i))[1]  # type: ignore[method-assign]
            yield tp, image, decoded
    finally:
        os.close(fd)


def padded(image: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    """The window (x, y, w, h) of ``image`` with white outside it."""
    out = np.full((h, w, 3), 255, np.uint8)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, image.shape[1]), min(y + h, image.shape[0])
    if x1 > x0 and y1 > y0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = image[y0:y1, x0:x1]
    return out


@pytest.mark.parametrize(
    "window", [(0, 0, 100, 70), (5, 7, 40, 33), (-8, -3, 30, 20), (90, 60, 30, 30), (200, 0, 5, 5)]
)
def test_window_equals_the_image_with_white_outside(page, window) -> None:
    tp, image, _ = page
    assert np.array_equal(tp.read(*window), padded(image, *window))


def test_sparse_read_decodes_only_tiles_under_the_windows(page) -> None:
    tp, image, decoded = page
    x, y, w, h = 4, 2, 90, 60  # spans tile columns 0..5 and rows 0..3
    needed = [(0, 0, 10, 10), (60, 40, 20, 15)]  # region pixels
    out = tp.read(x, y, w, h, needed)
    # (4..13, 2..11) lies in tile (0, 0); (64..83, 42..56) in columns 4-5, rows 2-3
    assert sorted(decoded) == sorted([0, 2 * 7 + 4, 2 * 7 + 5, 3 * 7 + 4, 3 * 7 + 5])
    full = padded(image, x, y, w, h)
    for wx, wy, ww, wh in needed:
        assert np.array_equal(out[wy : wy + wh, wx : wx + ww], full[wy : wy + wh, wx : wx + ww])
    # a pixel under no decoded tile is white
    assert np.all(out[30, 40] == 255)


def test_sparse_read_with_every_tile_needed_equals_a_full_read(page) -> None:
    tp, image, decoded = page
    out = tp.read(3, 5, 80, 60, [(0, 0, 80, 60)])
    assert np.array_equal(out, padded(image, 3, 5, 80, 60))
    assert len(decoded) == len(set(decoded)) == 6 * 5  # each tile decoded once
    decoded.clear()
    assert not tp.read(3, 5, 80, 60, []).min() < 255 and not decoded  # nothing needed
