"""Resolution maths: which pyramid level to read for a target mpp, and how much to resample.

``best_level`` and ``plan_read`` are pure (no I/O) so the tiler can plan large block reads with
the same rule that ``read_at_mpp`` uses for single patches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cytoscreen.io.base import RGBArray, SlideReader
from cytoscreen.types import MPP_TOLERANCE, SlideMeta


def best_level(level_mpps: Sequence[float], target_mpp: float, tolerance: float) -> int:
    """Coarsest level whose mpp is at most ``target_mpp * (1 + tolerance)``; level 0 if none.

    Reading the coarsest level that is still at least as fine as the target keeps the read small
    and means patches are only ever downsampled (anti-aliased), never invented by upsampling --
    except on slides scanned coarser than the target, where level 0 is the only choice.
    """
    if not level_mpps:
        raise ValueError("a slide has at least one level")
    if not (math.isfinite(target_mpp) and target_mpp > 0):
        raise ValueError(f"target_mpp must be a positive finite number, got {target_mpp!r}")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a non-negative finite number, got {tolerance!r}")
    limit = target_mpp * (1.0 + tolerance)
    fine_enough = [i for i, mpp in enumerate(level_mpps) if mpp <= limit]
    if not fine_enough:
        return 0
    # "coarsest" by resolution, not by index (levels are not assumed sorted); ties -> lower index
    return max(fine_enough, key=lambda i: (level_mpps[i], -i))


@dataclass(frozen=True)
class ReadPlan:
    """One region read: ``size`` pixels of ``level`` at level-0 ``location``, resized by ``scale``.

    ``scale`` is level pixels per output pixel (``target_mpp / level_mpp``); 1.0 means the level is
    read as-is (its mpp is within the tolerance of the target) and no resampling happens.
    ``out_size`` is the (width, height) the read is resampled to.
    """

    level: int
    location: tuple[int, int]  # level-0 (x, y) of the top-left corner
    size: tuple[int, int]  # (width, height) in pixels of ``level``
    scale: float
    out_size: tuple[int, int]

    @property
    def needs_resample(self) -> bool:
        return self.size != self.out_size


def plan_read(
    meta: SlideMeta,
    location_l0: tuple[int, int],
    size_px: tuple[int, int],
    target_mpp: float,
    tolerance: float = MPP_TOLERANCE,
) -> ReadPlan:
    """Plan the read of a ``size_px`` field at ``target_mpp`` whose top-left is ``location_l0``.

    The field covers ``size_px * target_mpp`` micrometres whatever the scan resolution. The region
    size at the chosen level is rounded to whole pixels, so the field is exact to within half a
    level pixel per side; the level-0 location is kept as given (backends map it to the level
    grid by truncation, as OpenSlide does).
    """
    w, h = (int(v) for v in size_px)
    if w <= 0 or h <= 0:
        raise ValueError(f"size_px must be positive, got {size_px!r}")
    level_mpps = [meta.level_mpp(i) for i in range(meta.level_count)]
    level = best_level(level_mpps, target_mpp, tolerance)
    scale = target_mpp / level_mpps[level]
    if abs(scale - 1.0) <= tolerance:
        scale = 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    x, y = (int(v) for v in location_l0)
    return ReadPlan(level=level, location=(x, y), size=size, scale=scale, out_size=(w, h))


def resample(image: RGBArray, size: tuple[int, int]) -> RGBArray:
    """Resize an RGB uint8 image to (width, height), anti-aliased when shrinking.

    Pillow's convolution resize widens its Lanczos kernel by the reduction factor, so it filters
    out frequencies the smaller grid cannot hold (no moire on regular structures).
    """
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    pil = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    out = pil.resize((int(size[0]), int(size[1])), resample=Image.Resampling.LANCZOS)
    return np.asarray(out, dtype=np.uint8)


def read_at_mpp(
    reader: SlideReader,
    location_l0: tuple[int, int],
    size_px: tuple[int, int],
    target_mpp: float,
    tolerance: float = MPP_TOLERANCE,
) -> RGBArray:
    """Read a ``size_px`` (width, height) patch at ``target_mpp`` um/px from level-0 location.

    Returns an array of shape (height, width, 3): the same physical field whatever the scan
    resolution or pyramid of the slide.
    """
    plan = plan_read(reader.meta, location_l0, size_px, target_mpp, tolerance)
    region = reader.read_region(plan.location, plan.level, plan.size)
    return resample(region, plan.out_size)
