"""Direct access to the tiles of a tiled TIFF page: each tile read with one positional read and
decoded once by tifffile's own decoder (any compression tifffile supports, JPEG tables included).

This is the fast path behind ``TiffSlideReader.read_region`` for tiled pages: it skips the
generic zarr indexing layer and releases the GIL in both the read (``os.pread``) and the decode
(imagecodecs), so threads scale across cores.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import numpy.typing as npt


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

    def read(self, x: int, y: int, w: int, h: int) -> npt.NDArray[np.uint8]:
        """Pixels of the window (x, y, w, h) in page coordinates; outside the page is white."""
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        inside = (x0, y0, x1, y1) == (x, y, x + w, y + h)
        shape = (h, w, self.samples)
        out = np.empty(shape, np.uint8) if inside else np.full(shape, 255, np.uint8)
        if x1 <= x0 or y1 <= y0:
            return out
        for ty in range(y0 // self.tile_h, (y1 - 1) // self.tile_h + 1):
            for tx in range(x0 // self.tile_w, (x1 - 1) // self.tile_w + 1):
                tile = self.tile(ty * self._tiles_across + tx)
                gx, gy = tx * self.tile_w, ty * self.tile_h  # tile origin in the page
                sx0, sy0 = max(x0, gx), max(y0, gy)
                sx1, sy1 = min(x1, gx + self.tile_w), min(y1, gy + self.tile_h)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                    sy0 - gy : sy1 - gy, sx0 - gx : sx1 - gx
                ]
        return out
