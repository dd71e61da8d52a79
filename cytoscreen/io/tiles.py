"""Direct access to the tiles of a tiled TIFF page: each tile read with one positional read and
decoded once by tifffile's own decoder (any compression tifffile supports, JPEG tables included).

This is the fast path behind ``TiffSlideReader.read_region`` for tiled pages: it skips the
generic zarr indexing layer and releases the GIL in both the read (``os.pread``) and the decode
(imagecodecs), so threads scale across cores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Windows = Sequence[tuple[int, int, int, int]]  # (x, y, w, h) rectangles


class TiledPage:
    """One tiled, chunky (interleaved) 8-bit page of a TIFF file, read tile by tile."""

    def __init__(self, page: Any, fd: int) -> None:
        self._fd = fd
        self.width = int(page.imagewidth)
        self.height = int(page.imagelength)
        self.tile_w = int(page.tilewidth)
        self.tile_h = int(page.tilelength)
        self.samples = int(page.samplesperpixel)
        self._tiles_across = math.ceil(self.width / self.tile_w)
        self._offsets = page.dataoffsets
        self._counts = page.databytecounts
        self._decode = page.decode
        self._jpegtables = page.jpegtables

    @staticmethod
    def supports(page: Any) -> bool:
        """True for tiled, 2-D, chunky, uint8 pages (what slide scanners write)."""
        return bool(
            page.is_tiled
            and page.imagedepth == 1
            and page.dtype == np.uint8
            and page.planarconfig == 1
            and page.samplesperpixel in (1, 3, 4)
        )

    def tile(self, index: int) -> npt.NDArray[np.uint8]:
        """Decoded tile ``index`` as (tile_h, tile_w, samples)."""
        count = int(self._counts[index])
        data = os.pread(self._fd, count, int(self._offsets[index])) if count else None
        decoded, _, _ = self._decode(data, index, jpegtables=self._jpegtables)
        if decoded is None:  # an empty (sparse) tile: white
            return np.full((self.tile_h, self.tile_w, self.samples), 255, np.uint8)
        arr = np.asarray(decoded).reshape(self.tile_h, self.tile_w, self.samples)
        return arr

    def read(
        self, x: int, y: int, w: int, h: int, needed: Windows | None = None
    ) -> npt.NDArray[np.uint8]:
        """Pixels of the window (x, y, w, h) in page coordinates; outside the page is white.

        ``needed`` lists (x, y, w, h) rectangles in the window's own pixels: only tiles under
        at least one of them are read and decoded, the rest of the window is left white (a
        block whose patches leave corners of their bounding box empty).
        """
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        shape = (h, w, self.samples)
        if x1 <= x0 or y1 <= y0:
            return np.full(shape, 255, np.uint8)
        tx0, ty0 = x0 // self.tile_w, y0 // self.tile_h
        tx1, ty1 = (x1 - 1) // self.tile_w + 1, (y1 - 1) // self.tile_h + 1
        wanted = self._wanted(x, y, (tx0, ty0, tx1, ty1), needed)
        whole = (x0, y0, x1, y1) == (x, y, x + w, y + h) and bool(wanted.all())
        out = np.empty(shape, np.uint8) if whole else np.full(shape, 255, np.uint8)
        for ty, tx in zip(*np.nonzero(wanted), strict=True):
            ty, tx = int(ty) + ty0, int(tx) + tx0
            tile = self.tile(ty * self._tiles_across + tx)
            gx, gy = tx * self.tile_w, ty * self.tile_h  # tile origin in the page
            sx0, sy0 = max(x0, gx), max(y0, gy)
            sx1, sy1 = min(x1, gx + self.tile_w), min(y1, gy + self.tile_h)
            out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                sy0 - gy : sy1 - gy, sx0 - gx : sx1 - gx
            ]
        return out

    def _wanted(
        self, x: int, y: int, span: tuple[int, int, int, int], needed: Windows | None
    ) -> npt.NDArray[np.bool_]:
        """Which tiles of ``span`` (tile columns tx0..tx1, rows ty0..ty1) to decode."""
        tx0, ty0, tx1, ty1 = span
        if needed is None:
            return np.ones((ty1 - ty0, tx1 - tx0), np.bool_)
        wanted = np.zeros((ty1 - ty0, tx1 - tx0), np.bool_)
        for wx, wy, ww, wh in needed:
            if ww <= 0 or wh <= 0:
                continue
            # page pixels [x + wx, x + wx + ww) cover tile columns a..b (clipped to the span)
            a = max((x + wx) // self.tile_w, tx0)
            b = min((x + wx + ww - 1) // self.tile_w + 1, tx1)
            c = max((y + wy) // self.tile_h, ty0)
            d = min((y + wy + wh - 1) // self.tile_h + 1, ty1)
            if a < b and c < d:
                wanted[c - ty0 : d - ty0, a - tx0 : b - tx0] = True
        return wanted
