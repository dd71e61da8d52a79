"""Deep Zoom (DZI) tiles of a slide for the viewer, read through the project's slide reader.

The maths (levels, tile boxes) is pure; ``render_tile`` reads pyramid pixels only (never the
label or macro images) with :func:`cytoscreen.io.read_at_mpp`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cytoscreen.io import SlideReader, read_at_mpp
from cytoscreen.types import MPP_TOLERANCE

TILE = 256
FORMAT = "jpeg"


@dataclass(frozen=True)
class TileBox:
    """One tile: level-0 top-left, size in output pixels and the level's level-0 px per pixel."""

    x0: int
    y0: int
    width: int
    height: int
    downsample: float


def max_level(width: int, height: int) -> int:
    """Deep Zoom's top level: the one at full resolution (level 0 is 1 x 1)."""
    return max(0, math.ceil(math.log2(max(width, height, 1))))


def level_size(width: int, height: int, level: int) -> tuple[int, int]:
    top = max_level(width, height)
    if not 0 <= level <= top:
        raise ValueError(f"level {level} outside 0..{top}")
    ds = 2 ** (top - level)
    return max(1, math.ceil(width / ds)), max(1, math.ceil(height / ds))


def tile_count(width: int, height: int, level: int, tile: int = TILE) -> tuple[int, int]:
    w, h = level_size(width, height, level)
    return math.ceil(w / tile), math.ceil(h / tile)


def tile_box(width: int, height: int, level: int, col: int, row: int, tile: int = TILE) -> TileBox:
    """The level-0 area of tile (col, row) of a Deep Zoom level (no overlap between tiles)."""
    cols, rows = tile_count(width, height, level, tile)
    if not (0 <= col < cols and 0 <= row < rows):
        raise ValueError(f"tile {col},{row} outside {cols} x {rows} at level {level}")
    w, h = level_size(width, height, level)
    ds = float(2 ** (max_level(width, height) - level))
    tw = min(tile, w - col * tile)
    th = min(tile, h - row * tile)
    return TileBox(round(col * tile * ds), round(row * tile * ds), tw, th, ds)


def dzi_xml(width: int, height: int, tile: int = TILE) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
        f'Format="{FORMAT}" Overlap="0" TileSize="{tile}">'
        f'<Size Width="{width}" Height="{height}"/></Image>\n'
    )


def render_tile(reader: SlideReader, box: TileBox, quality: int = 85) -> bytes:
    """JPEG bytes of one tile, read at the tile's resolution from the best pyramid level."""
    mpp = reader.meta.mpp * box.downsample
    pixels = read_at_mpp(reader, (box.x0, box.y0), (box.width, box.height), mpp, MPP_TOLERANCE)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode="RGB").save(
        buf, format="JPEG", quality=quality
    )
    return buf.getvalue()
