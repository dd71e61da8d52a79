"""Where the cells are: a stain mask on a low-resolution view of a cytology slide.

Cytology is sparse: most of a Pap smear or liquid-based slide is bare glass. A pixel is
cell-bearing when it absorbs light (optical density above ``od_threshold`` relative to the
slide's own bright background) or, with ``method: saturation``, when it is coloured, and it is
connected to pixels at twice that threshold (hysteresis: a cell has a stained nucleus). Fixed
physical thresholds, not Otsu: a blank slide has no stained pixels and yields an empty mask,
whereas a histogram split would cut its noise in two.

``stain_mask`` is pure (array in, array out); ``slide_foreground`` does the reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.color import rgb2hsv
from skimage.filters import apply_hysteresis_threshold
from skimage.morphology import isotropic_dilation

from cytoscreen.config import ForegroundConfig
from cytoscreen.io.base import RGBArray, SlideReader
from cytoscreen.io.resolution import plan_read, resample

BoolArray = npt.NDArray[np.bool_]

# Bright reference: the 99th percentile of each channel (the glass), never below this value so
# that an evenly dim blank slide is not "normalised" into having stain.
_BACKGROUND_PERCENTILE = 99.0
_BACKGROUND_FLOOR = 200.0
# An object must reach this multiple of the threshold somewhere (its nucleus) to count.
_SEED_FACTOR = 2.0
_MAX_READ_PIXELS = 32 * 1024 * 1024  # per strip when the slide has no coarse pyramid level
_SHIFT_DILATION_MAX_RADIUS = 8.0  # above this, dilate through the distance map


@dataclass(frozen=True)
class ForegroundMask:
    """A boolean mask whose pixel covers ``scale`` x ``scale`` level-0 pixels."""

    mask: BoolArray
    scale: float  # level-0 pixels per mask pixel
    mpp: float  # micrometres per mask pixel

    @property
    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def optical_density(rgb: RGBArray) -> npt.NDArray[np.float32]:
    """Per-pixel optical density (max over channels) against the image's bright background."""
    px = np.asarray(rgb)
    if px.ndim != 3 or px.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) RGB image, got shape {px.shape}")
    if px.size == 0:
        return np.zeros(px.shape[:2], np.float32)
    if px.dtype == np.uint8:  # 256 values per channel: percentiles and densities looked up
        bright = np.maximum(
            [_percentile_u8(px[..., c], _BACKGROUND_PERCENTILE) for c in range(3)],
            _BACKGROUND_FLOOR,
        ).astype(np.float32)
        levels = np.arange(256, dtype=np.float32)
        od = np.clip(-np.log10(np.maximum(levels, 1.0) / bright[:, None]), 0.0, None)
        out = od[0][px[..., 0]]
        np.maximum(out, od[1][px[..., 1]], out=out)
        np.maximum(out, od[2][px[..., 2]], out=out)
        return np.asarray(out, dtype=np.float32)
    channels = [np.ascontiguousarray(px[..., c], dtype=np.float32).reshape(-1) for c in range(3)]
    bright = np.maximum(
        [np.percentile(c, _BACKGROUND_PERCENTILE) for c in channels], _BACKGROUND_FLOOR
    ).astype(np.float32)
    values = np.asarray(px, dtype=np.float32)
    dens = -np.log10(np.maximum(values, 1.0) / bright)
    return np.asarray(np.clip(dens, 0.0, None).max(axis=2), dtype=np.float32)


def _percentile_u8(channel: npt.NDArray[np.uint8], q: float) -> float:
    """``np.percentile`` (linear method) of a uint8 image, from its histogram: the two order
    statistics around rank ``(n - 1) * q / 100`` are found by counting, not by sorting."""
    counts = np.bincount(np.asarray(channel).reshape(-1), minlength=256)
    rank = (counts.sum() - 1) * (q / 100.0)
    lo, hi = math.floor(rank), math.ceil(rank)
    cum = np.cumsum(counts)
    v_lo, v_hi = np.searchsorted(cum, [lo, hi], side="right")
    if v_lo == v_hi:
        return float(v_lo)
    # between two values: let numpy interpolate exactly as it would (rare on real slides)
    return float(np.percentile(np.asarray(channel, dtype=np.float32), q))


def remove_specks(mask: BoolArray, max_pixels: float) -> BoolArray:
    """Drop 8-connected objects with an area below ``max_pixels`` mask pixels."""
    if max_pixels <= 1.0 or not mask.any():
        return mask.copy()
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= max_pixels
    keep[0] = False
    return np.asarray(keep[labels], dtype=np.bool_)


def dilate_disk(mask: BoolArray, radius: float) -> BoolArray:
    """Binary dilation by a disk: a pixel is set when a mask pixel lies within ``radius``
    (Euclidean, in pixels). Same result as thresholding the exact distance map
    (``skimage.morphology.isotropic_dilation``), which is used for large radii; small ones
    are done as a few shifted ORs, one per row of the disk (much faster on a whole-slide mask).
    """
    if radius > _SHIFT_DILATION_MAX_RADIUS:
        return np.asarray(isotropic_dilation(mask, radius), dtype=np.bool_)
    reach = int(math.floor(radius))
    h, w = mask.shape
    # half-width of the disk at each row offset, with the distance map's own test sqrt(d2) <= r
    offsets = np.arange(reach + 1, dtype=np.float64)
    half = [
        int(np.sum(np.sqrt(offsets**2 + float(dy) ** 2) <= radius)) - 1 for dy in range(reach + 1)
    ]
    rows = {0: mask}  # rows[k]: the mask dilated horizontally by k pixels
    for k in range(1, max(half) + 1):
        grown = rows[k - 1].copy()
        if k < w:
            grown[:, k:] |= mask[:, : w - k]
            grown[:, : w - k] |= mask[:, k:]
        rows[k] = grown
    out = rows[half[0]].copy()
    for dy in range(1, reach + 1):
        if half[dy] < 0 or dy >= h:
            continue
        band = rows[half[dy]]
        out[dy:] |= band[: h - dy]
        out[: h - dy] |= band[dy:]
    return out


def stain_mask(rgb: RGBArray, mpp: float, cfg: ForegroundConfig) -> BoolArray:
    """Cell-bearing pixels of a low-resolution RGB view at ``mpp`` um/px."""
    if cfg.method == "od":
        signal, low = optical_density(rgb), cfg.od_threshold
    else:
        signal, low = rgb2hsv(np.asarray(rgb, np.uint8))[..., 1], cfg.saturation_threshold
    # hysteresis: faint cytoplasm joins the mask only when connected to clearly stained pixels
    # (a nucleus), so uneven illumination of bare glass near the threshold is not foreground
    raw = apply_hysteresis_threshold(signal, low, low * _SEED_FACTOR)
    mask = remove_specks(np.asarray(raw, np.bool_), cfg.min_object_um2 / mpp**2)
    radius = cfg.dilate_um / mpp
    if radius > 0 and mask.any():
        mask = dilate_disk(mask, radius)
    return mask


def read_thumbnail(reader: SlideReader, mpp: float, tolerance: float = 0.02) -> RGBArray:
    """The whole slide at ``mpp`` um/px, read from the coarsest level at least that fine.

    Reads in horizontal strips when the chosen level is large (slides without a pyramid), so
    memory stays bounded.
    """
    meta = reader.meta
    width0, height0 = meta.dimensions
    ratio = mpp / meta.mpp  # level-0 pixels per thumbnail pixel
    out_w = max(1, math.ceil(width0 / ratio))
    out_h = max(1, math.ceil(height0 / ratio))
    whole = plan_read(meta, (0, 0), (out_w, out_h), mpp, tolerance)
    level_px = whole.size[0] * whole.size[1]
    rows = out_h if level_px <= _MAX_READ_PIXELS else max(1, out_h * _MAX_READ_PIXELS // level_px)
    strips = []
    for top in range(0, out_h, rows):
        h = min(rows, out_h - top)
        plan = plan_read(meta, (0, round(top * ratio)), (out_w, h), mpp, tolerance)
        region = reader.read_region(plan.location, plan.level, plan.size)
        strips.append(resample(region, plan.out_size))
    return np.concatenate(strips, axis=0) if len(strips) > 1 else strips[0]


def slide_foreground(reader: SlideReader, cfg: ForegroundConfig) -> ForegroundMask:
    """Stain mask of a slide on its ``cfg.thumbnail_mpp`` view."""
    thumb = read_thumbnail(reader, cfg.thumbnail_mpp)
    mask = stain_mask(thumb, cfg.thumbnail_mpp, cfg)
    return ForegroundMask(
        mask=mask, scale=cfg.thumbnail_mpp / reader.meta.mpp, mpp=cfg.thumbnail_mpp
    )
