"""Write pyramidal tiled TIFFs that OpenSlide and tiffslide both read, in bounded memory.

Each level is written tile by tile from a render callback, so a slide of any size needs only
one tile in memory at a time. Resolution tags carry the mpp (pixels per centimetre).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile

# render(level, x, y, w, h) -> (h, w, 3) uint8 at that level's pixel grid
RenderFn = Callable[[int, int, int, int, int], npt.NDArray[np.uint8]]


def pyramid_dimensions(
    width: int, height: int, *, factor: int = 2, min_size: int = 512
) -> list[tuple[int, int]]:
    """Level sizes, halving (by ``factor``) until the longest side is below ``min_size``."""
    dims = [(width, height)]
    while max(dims[-1]) > min_size:
        w, h = dims[-1]
        dims.append((max(1, -(-w // factor)), max(1, -(-h // factor))))
    return dims


def write_pyramidal_tiff(
    path: str | Path,
    width: int,
    height: int,
    render: RenderFn,
    *,
    mpp: float | None,
    tile: int = 256,
    factor: int = 2,
    min_size: int = 512,
    quality: int = 85,
    compression: str = "jpeg",
    description: str = "cytoscreen synthetic slide",
    reduce_mb: float = 768.0,
) -> list[tuple[int, int]]:
    """Write a tiled, pyramidal RGB TIFF; returns the level dimensions written.

    ``mpp=None`` writes no resolution (for testing the missing-mpp path). When level 1 fits in
    ``reduce_mb`` of memory, only level 0 is rendered: each of its tiles is also block-averaged
    into an in-memory level 1, and the coarser levels are reduced from that (as a scanner
    builds its pyramid), which is several times faster than rendering every level. Larger
    slides render every level region by region, so memory stays bounded at any size.
    """
    dims = pyramid_dimensions(width, height, factor=factor, min_size=min_size)
    path = Path(path)
    bigtiff = width * height * 3 > 2**31
    reduced: list[np.ndarray] = []
    if len(dims) > 1 and dims[1][0] * dims[1][1] * 3 <= reduce_mb * 2**20 and tile % factor == 0:
        reduced.append(np.full((dims[1][1], dims[1][0], 3), 255, np.uint8))
        render = _reducing(render, reduced[0], factor)

        def from_memory(level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
            while len(reduced) < level:
                reduced.append(_reduce(reduced[-1], factor))
            return reduced[level - 1][y : y + h, x : x + w]

    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        for level, (w, h) in enumerate(dims):
            if reduced and level > 0:
                render = from_memory
            kwargs: dict[str, Any] = {}
            if mpp is not None:
                px_per_cm = 1e4 / (mpp * factor**level)
                kwargs.update(resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER")
            if compression == "jpeg":
                kwargs["compressionargs"] = {"level": quality}
            tw.write(
                _tiles(render, level, w, h, tile),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression=compression,
                subfiletype=0 if level == 0 else 1,
                description=description if level == 0 else None,
                metadata=None,
                **kwargs,
            )
    return dims


def _reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """Block mean by ``factor`` (edges padded with white), rounded to uint8."""
    h, w = image.shape[:2]
    ph, pw = -(-h // factor) * factor, -(-w // factor) * factor
    if (ph, pw) != (h, w):
        pad = np.full((ph, pw, 3), 255, np.uint8)
        pad[:h, :w] = image
        image = pad
    acc = np.zeros((ph // factor, pw // factor, 3), np.uint16)
    for dy in range(factor):
        for dx in range(factor):
            acc += image[dy::factor, dx::factor]
    n = factor * factor
    acc += n // 2
    acc //= n
    return acc.astype(np.uint8)


def _reducing(render: RenderFn, level1: np.ndarray, factor: int) -> RenderFn:
    """``render`` for level 0 that also writes each region, reduced, into ``level1``."""

    def out(level: int, x: int, y: int, w: int, h: int) -> npt.NDArray[np.uint8]:
        block = np.asarray(render(level, x, y, w, h), dtype=np.uint8)
        if level == 0 and x % factor == 0 and y % factor == 0:
            small = _reduce(block, factor)
            level1[
                y // factor : y // factor + small.shape[0],
                x // factor : x // factor + small.shape[1],
            ] = small
        return block

    return out


def _tiles(render: RenderFn, level: int, w: int, h: int, tile: int) -> Iterator[np.ndarray]:
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            tw, th = min(tile, w - x), min(tile, h - y)
            block = np.asarray(render(level, x, y, tw, th), dtype=np.uint8)
            if block.shape != (th, tw, 3):
                raise ValueError(f"render returned {block.shape}, expected {(th, tw, 3)}")
            if (tw, th) != (tile, tile):  # edge tiles are padded to full size with white
                full = np.full((tile, tile, 3), 255, np.uint8)
                full[:th, :tw] = block
                block = full
            yield block


def write_array_tiff(
    path: str | Path, image: npt.NDArray[np.uint8], *, mpp: float | None, **kwargs: object
) -> list[tuple[int, int]]:
    """Write an in-memory RGB image as a pyramid (levels by block-mean downsampling)."""
    from skimage.transform import downscale_local_mean

    factor = int(kwargs.get("factor", 2))  # type: ignore[call-overload]
    levels: list[np.ndarray] = [image]

    def render(level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        while len(levels) <= level:
            prev = levels[-1]
            levels.append(
                np.clip(downscale_local_mean(prev, (factor, factor, 1), cval=255), 0, 255)
                .round()
                .astype(np.uint8)
            )
        return levels[level][y : y + h, x : x + w]

    h, w = image.shape[:2]
    return write_pyramidal_tiff(path, w, h, render, mpp=mpp, **kwargs)  # type: ignore[arg-type]
