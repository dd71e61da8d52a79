"""Where the cells are: a stain mask on a low-resolution view of a cytology slide.

Cytology is sparse: most of a Pap smear or liquid-based slide is bare glass, and a lone cell
may be a pale cytoplasm around one small nucleus. The mask is computed on a ``thumbnail_mpp``
grid (8 um/px by default), but the slide is read at the finer ``sample_mpp`` (2 um/px) and
pooled into that grid twice: the mean colour of each mask pixel (cytoplasm, the extent of cells)
and its darkest value per channel (min-pooling: a nucleus of 5 um survives whole, where the mean
of an 8 um pixel would average it into the glass).

A pixel is cell-bearing when its mean absorbs light (optical density above ``od_threshold``
relative to the slide's own bright background) or, with ``method: saturation``, when it is
coloured, and it is connected to a *seed*: a pixel whose darkest value reaches twice that
density (a nucleus). Seeds must look like cells, not dirt (``_valid_seeds``): coloured (stain
has a hue; dust, bubble rims and pigment are grey), or in a cell-shaped area: thick, or a
small faint one with some cytoplasm (a bubble's rim is thin and long, a dust speck has no
cytoplasm). Wide, evenly dark areas without texture are pen marks and are never foreground.
Fixed physical thresholds, not Otsu: a blank slide has no stained pixels and yields an empty
mask, whereas a histogram split would cut its noise in two.

The same pooled mean also gives the obscured share of the cell-bearing area (blood, thick
overlap: ``cytoscreen.tiling.obscured``), kept with the mask as a slide statistic.

``stain_mask``, ``pool`` and ``obscured_estimate`` are pure (arrays in, array out);
``slide_foreground`` does the reading.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.color import rgb2hsv
from skimage.morphology import disk, isotropic_dilation

from cytoscreen.config import ForegroundConfig
from cytoscreen.io.base import RGBArray, SlideReader
from cytoscreen.io.resolution import plan_read, resample
from cytoscreen.tiling.obscured import ObscuredEstimate, estimate_obscured
from cytoscreen.types import MPP_TOLERANCE

BoolArray = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]

# Bright reference: the 99th percentile of each channel (the glass), never below this value so
# that an evenly dim blank slide is not "normalised" into having stain.
_BACKGROUND_PERCENTILE = 99.0
_BACKGROUND_FLOOR = 200.0
# An object must reach this multiple of the threshold somewhere (its nucleus) to count.
_SEED_FACTOR = 2.0
# A seed is coloured when (max - min) / max of its per-channel optical densities reaches this:
# grey dust, pigment and bubble rims stay below it (0.0-0.05), stained nuclei above it (dark
# nuclei can be nearly grey: those are kept when their cell is thick, see _valid_seeds).
_SEED_CHROMA = 0.08
# A grey seed is also a cell inside a faint area (mean density >= _FAINT_OD: pale cytoplasm)
# three pixels thick somewhere and at most 2,500 mask pixels (0.16 mm^2 at 8 um/px): a cell,
# not a speck or a rim, and bounded, not uneven light over the glass.
_FAINT_OD = 0.025
_CELL_MAX_PIXELS = 2500
_CELL_MIN_PIXELS = 1  # a lone cell has cytoplasm: a faint pixel with no dark sample (64 um^2)
_CELL_MAX_EXTENT = 12  # pixels (96 um at 8 um/px): a lone cell, not a rim or a fibre
# Pen marks: wider than this, mean density above _PEN_OD, and even: their darkest samples are
# within _PEN_TEXTURE x the mean (cells: nuclei make the darkest sample far above the mean).
_PEN_WIDTH_UM = 120.0
_PEN_OD = 0.35
_PEN_TEXTURE = 0.25
_PEN_MARGIN_UM = 32.0  # the stroke's fading edge, excluded with it
_MAX_READ_PIXELS = 32 * 1024 * 1024  # per strip when the slide has no coarse pyramid level
_SHIFT_DILATION_MAX_RADIUS = 8.0  # above this, dilate through the distance map


@dataclass(frozen=True)
class ForegroundMask:
    """A boolean mask whose pixel covers ``scale`` x ``scale`` level-0 pixels."""

    mask: BoolArray
    scale: float  # level-0 pixels per mask pixel
    mpp: float  # micrometres per mask pixel
    obscured: ObscuredEstimate | None = None  # share of the cell-bearing area obscured

    @property
    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def background(rgb: RGBArray) -> npt.NDArray[np.float32]:
    """Per-channel bright reference of an image: the glass (99th percentile, floored at 200)."""
    px = np.asarray(rgb)
    if px.size == 0:
        return np.full(3, 255.0, np.float32)
    if px.dtype == np.uint8:  # 256 values per channel: percentiles from histograms
        values = [_percentile_u8(px[..., c], _BACKGROUND_PERCENTILE) for c in range(3)]
    else:
        values = [
            float(np.percentile(np.asarray(px[..., c], np.float32), _BACKGROUND_PERCENTILE))
            for c in range(3)
        ]
    return np.maximum(values, _BACKGROUND_FLOOR).astype(np.float32)


def channel_densities(rgb: RGBArray, bright: npt.NDArray[np.float32]) -> list[F32]:
    """Optical density of each channel (three ``(h, w)`` arrays) against ``bright``; never
    negative."""
    px = np.asarray(rgb)
    if px.dtype == np.uint8:  # lookup tables: one per channel
        levels = np.arange(256, dtype=np.float32)
        od = np.clip(-np.log10(np.maximum(levels, 1.0) / bright[:, None]), 0.0, None)
        return [np.asarray(od[c][px[..., c]], np.float32) for c in range(3)]
    values = np.asarray(px, dtype=np.float32)
    dens = np.clip(-np.log10(np.maximum(values, 1.0) / bright), 0.0, None)
    return [np.asarray(dens[..., c], np.float32) for c in range(3)]


def optical_density(rgb: RGBArray, bright: npt.NDArray[np.float32] | None = None) -> F32:
    """Per-pixel optical density (max over channels) against ``bright`` (by default the image's
    own bright background, ``background``)."""
    px = np.asarray(rgb)
    if px.ndim != 3 or px.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) RGB image, got shape {px.shape}")
    if px.size == 0:
        return np.zeros(px.shape[:2], np.float32)
    ref = background(px) if bright is None else np.asarray(bright, np.float32)
    r, g, b = channel_densities(px, ref)
    return np.asarray(np.maximum(np.maximum(r, g), b), dtype=np.float32)


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


def pool(rgb: RGBArray, factor: int) -> tuple[RGBArray, RGBArray]:
    """(mean, per-channel minimum) of each ``factor`` x ``factor`` block of an RGB image.

    The image is padded with white to a multiple of ``factor``. The minimum of each channel
    keeps a small dark object (a nucleus) at its full density, and because optical density
    falls with intensity in every channel, the density of the pooled minimum equals the
    darkest density in the block (max-pooling of the density).
    """
    px = np.asarray(rgb, dtype=np.uint8)
    if factor <= 1:
        return px, px
    h, w = px.shape[:2]
    ph, pw = -(-h // factor) * factor, -(-w // factor) * factor
    if (ph, pw) != (h, w):
        padded = np.full((ph, pw, 3), 255, np.uint8)
        padded[:h, :w] = px
        px = padded
    # reduce rows, then columns, with strided slices: much faster than a reduction over small
    # axes of a (h/f, f, w/f, f, 3) view
    acc = np.uint16 if factor <= 15 else np.uint32  # sums of factor^2 values up to 255
    rows_min = np.minimum(px[0::factor], px[1::factor])
    rows_sum = np.add(px[0::factor], px[1::factor], dtype=acc)
    for dy in range(2, factor):
        np.minimum(rows_min, px[dy::factor], out=rows_min)
        rows_sum += px[dy::factor]
    darkest = np.minimum(rows_min[:, 0::factor], rows_min[:, 1::factor])
    total = np.add(rows_sum[:, 0::factor], rows_sum[:, 1::factor], dtype=acc)
    for dx in range(2, factor):
        np.minimum(darkest, rows_min[:, dx::factor], out=darkest)
        total += rows_sum[:, dx::factor]
    total += factor * factor // 2
    mean = (total // (factor * factor)).astype(np.uint8)
    return mean, darkest


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


def pen_marks(od_mean: F32, od_dark: F32, mpp: float) -> BoolArray:
    """Wide, evenly dark areas (marker ink on the coverslip), grown by ``_PEN_MARGIN_UM``.

    Ink is dark (mean density >= ``_PEN_OD``) and even (its darkest sample within
    ``_PEN_TEXTURE`` x the mean); a stroke is wider than ``_PEN_WIDTH_UM``. Cells as dark as
    that are crowded nuclei, whose darkest samples stand far above the mean.
    """
    even = (od_mean >= _PEN_OD) & (od_dark <= od_mean * (1.0 + _PEN_TEXTURE))
    radius = _PEN_WIDTH_UM / 2.0 / mpp
    out = np.zeros(od_mean.shape, np.bool_)
    if radius < 1.0 or not even.any():
        return out
    # only areas that can hold the whole disk are opened (most even specks are cells)
    footprint = disk(int(round(radius)))
    margin = max(1, int(math.ceil(_PEN_MARGIN_UM / mpp)))
    labels, n = ndimage.label(even)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or sizes[k] < footprint.sum():
            continue
        grown = tuple(slice(max(0, b.start - margin), b.stop + margin) for b in box)
        part = labels[grown] == k
        wide = ndimage.binary_opening(part, structure=footprint)
        out[grown] |= dilate_disk(wide, float(margin))
    return out


def _valid_seeds(
    seeds: BoolArray, stained: BoolArray, faint: BoolArray, chroma: F32, coloured: bool
) -> BoolArray:
    """Seeds that look like cells, not dirt. A seed is kept when it is coloured, or lies in a
    stained area at least three pixels thick somewhere (it survives an erosion by one pixel:
    a cell body or a group of cells), or in a faint area (a pale cytoplasm) that is either as
    thick and at most ``_CELL_MAX_PIXELS`` pixels, or within ``_CELL_MAX_EXTENT`` with at
    least ``_CELL_MIN_PIXELS`` pixels of cytoplasm (faint, no dark sample): a lone cell. A
    grey dust speck has no cytoplasm; a fibre or a bubble's rim is thin and long."""
    if not seeds.any():
        return seeds
    valid = seeds & (chroma >= _SEED_CHROMA) if coloured else seeds.copy()
    rest = seeds & ~valid
    eight = np.ones((3, 3), bool)
    if rest.any():
        labels, n = ndimage.label(stained, structure=eight)
        thick = np.zeros(n + 1, bool)
        thick[np.unique(labels[ndimage.binary_erosion(stained, structure=eight)])] = True
        thick[0] = False
        valid |= rest & thick[labels]
        rest &= ~valid
    if rest.any():
        labels, n = ndimage.label(faint | rest, structure=eight)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        body = np.zeros(n + 1, bool)
        body[np.unique(labels[ndimage.binary_erosion(faint, structure=eight)])] = True
        body &= sizes <= _CELL_MAX_PIXELS
        # cytoplasm: faint pixels with no dark sample in them (all of a speck's pixels hold it)
        plain = np.bincount(labels[faint & ~seeds].ravel(), minlength=n + 1)
        for k, box in enumerate(ndimage.find_objects(labels), start=1):  # small, not a speck
            if box is not None and plain[k] >= _CELL_MIN_PIXELS:
                extent = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
                body[k] |= extent <= _CELL_MAX_EXTENT
        body[0] = False
        valid |= rest & body[labels]
    return valid


def stain_mask(
    rgb: RGBArray, mpp: float, cfg: ForegroundConfig, darkest: RGBArray | None = None
) -> BoolArray:
    """Cell-bearing pixels of a low-resolution RGB view at ``mpp`` um/px.

    ``darkest``: the per-channel minimum of each pixel's area read at a finer resolution
    (``pool``); without it the view itself stands in (a nucleus then only seeds the mask where
    it darkens a whole pixel).
    """
    dark = np.asarray(rgb if darkest is None else darkest, np.uint8)
    if cfg.method == "od":
        bright = background(rgb)
        signal, low = optical_density(rgb, bright), cfg.od_threshold
        r, g, b = channel_densities(dark, bright)
        seed_signal = np.maximum(np.maximum(r, g), b)
        lightest = np.minimum(np.minimum(r, g), b)
        chroma = np.asarray((seed_signal - lightest) / np.maximum(seed_signal, 1e-6), np.float32)
        pens = pen_marks(signal, seed_signal, mpp)
        coloured = True
    else:
        signal, low = rgb2hsv(np.asarray(rgb, np.uint8))[..., 1], cfg.saturation_threshold
        seed_signal = np.maximum(signal, rgb2hsv(dark)[..., 1])
        chroma = np.ones(signal.shape, np.float32)
        pens = np.zeros(signal.shape, np.bool_)
        coloured = False  # saturation is colour already
    stained = (signal >= low) & ~pens
    seeds = (seed_signal >= low * _SEED_FACTOR) & ~pens
    faint = (signal >= min(low, _FAINT_OD)) & ~pens
    seeds = _valid_seeds(seeds, stained, faint, chroma, coloured)
    # hysteresis: faint cytoplasm joins the mask only when connected to a seed (a nucleus), so
    # uneven illumination of bare glass near the threshold is not foreground
    region = stained | seeds
    labels, n = ndimage.label(region, structure=np.ones((3, 3), bool))
    keep = np.zeros(n + 1, bool)
    keep[np.unique(labels[seeds])] = True
    keep[0] = False
    mask = remove_specks(keep[labels], cfg.min_object_um2 / mpp**2)
    radius = cfg.dilate_um / mpp
    if radius > 0 and mask.any():
        mask = dilate_disk(mask, radius)
    return mask


def obscured_estimate(rgb: RGBArray, mask: BoolArray, mpp: float) -> ObscuredEstimate:
    """The obscured share of the cell-bearing pixels of ``mask`` (``tiling.obscured``), from
    the mean colour ``rgb`` of each mask pixel, against the view's own glass (``background``)."""
    px = np.asarray(rgb, np.uint8)
    return estimate_obscured(channel_densities(px, background(px)), mask, mpp)


def _strips(
    reader: SlideReader, mpp: float, rows_multiple: int = 1, tolerance: float = MPP_TOLERANCE
) -> Iterator[RGBArray]:
    """The whole slide at ``mpp`` um/px, top to bottom, in horizontal strips whose heights are
    multiples of ``rows_multiple`` (but the last): one strip when the level read is small."""
    meta = reader.meta
    width0, height0 = meta.dimensions
    ratio = mpp / meta.mpp  # level-0 pixels per thumbnail pixel
    out_w = max(1, math.ceil(width0 / ratio))
    out_h = max(1, math.ceil(height0 / ratio))
    whole = plan_read(meta, (0, 0), (out_w, out_h), mpp, tolerance)
    level_px = whole.size[0] * whole.size[1]
    rows = out_h if level_px <= _MAX_READ_PIXELS else max(1, out_h * _MAX_READ_PIXELS // level_px)
    rows = max(rows_multiple, rows // rows_multiple * rows_multiple)
    for top in range(0, out_h, rows):
        h = min(rows, out_h - top)
        plan = plan_read(meta, (0, round(top * ratio)), (out_w, h), mpp, tolerance)
        region = reader.read_region(plan.location, plan.level, plan.size)
        yield resample(region, plan.out_size)


def read_thumbnail(reader: SlideReader, mpp: float, tolerance: float = MPP_TOLERANCE) -> RGBArray:
    """The whole slide at ``mpp`` um/px, read from the coarsest level at least that fine.

    Reads in horizontal strips when the chosen level is large (slides without a pyramid), so
    memory stays bounded.
    """
    strips = list(_strips(reader, mpp, 1, tolerance))
    return np.concatenate(strips, axis=0) if len(strips) > 1 else strips[0]


def read_pooled(
    reader: SlideReader, sample_mpp: float, factor: int, tolerance: float = MPP_TOLERANCE
) -> tuple[RGBArray, RGBArray]:
    """The slide read at ``sample_mpp`` and pooled by ``factor`` (``pool``), strip by strip:
    (mean, per-channel minimum) at ``sample_mpp * factor`` um/px."""
    means, darkest = [], []
    for strip in _strips(reader, sample_mpp, factor, tolerance):
        m, d = pool(strip, factor)
        means.append(m)
        darkest.append(d)
    if len(means) == 1:
        return means[0], darkest[0]
    return np.concatenate(means, axis=0), np.concatenate(darkest, axis=0)


def slide_foreground(reader: SlideReader, cfg: ForegroundConfig) -> ForegroundMask:
    """Stain mask of a slide on a ``cfg.thumbnail_mpp`` grid, read at ``cfg.sample_mpp``, with
    the obscured share of its cell-bearing area (``obscured_estimate``).

    The grid is ``sample_mpp`` times a whole pooling factor (the nearest to ``thumbnail_mpp``).
    """
    factor = max(1, round(cfg.thumbnail_mpp / min(cfg.sample_mpp, cfg.thumbnail_mpp)))
    sample = cfg.thumbnail_mpp / factor
    mean, darkest = read_pooled(reader, sample, factor)
    mask = stain_mask(mean, cfg.thumbnail_mpp, cfg, darkest)
    return ForegroundMask(
        mask=mask,
        scale=cfg.thumbnail_mpp / reader.meta.mpp,
        mpp=cfg.thumbnail_mpp,
        obscured=obscured_estimate(mean, mask, cfg.thumbnail_mpp),
    )
