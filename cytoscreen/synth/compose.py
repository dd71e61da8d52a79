"""Pure compositing maths shared by the slide generator and training.

Light through a stained specimen follows Beer-Lambert: transmitted intensity is
``I = I0 * 10**(-OD)`` per channel, and the optical densities (OD) of stacked layers add. A
crop is turned into an OD layer relative to *its own* background plus a soft alpha that keeps
the central cell and fades the crop's square border; layers are then added onto an OD canvas,
so overlapping cells come out darker, as they do on glass. ``od_to_rgb`` turns a canvas back
into pixels over any glass colour.

Typical use (a training patch that looks like a slide patch)::

    canvas = np.zeros((224, 224, 3), np.float32)
    od, alpha = cell_alpha(crop)
    composite(canvas, od, alpha, x=60, y=60)
    rgb = od_to_rgb(canvas, glass=(238, 236, 240))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

FloatArray = npt.NDArray[np.float32]

# Typical clear-glass colour of a liquid-based preparation under a brightfield scanner.
DEFAULT_GLASS: tuple[float, float, float] = (238.0, 236.0, 240.0)
GLASS_MIN_BRIGHTNESS = 200.0  # a crop whose brightest pixels are darker has no visible glass
OD_MASK_THRESHOLD = 0.06  # OD (max over channels) counted as stained when finding the cell
MAX_OD = 3.0


def estimate_background(crop: npt.NDArray[np.uint8], *, quantile: float = 0.97) -> FloatArray:
    """Per-channel glass colour of a crop: the median of its brightest pixels.

    When even the brightest pixels are dim (the crop is all cytoplasm), the estimate is pulled
    towards ``DEFAULT_GLASS`` so the cytoplasm keeps its optical density.
    """
    rgb = crop.reshape(-1, 3).astype(np.float32)
    bright = rgb.sum(axis=1)
    top = rgb[bright >= np.quantile(bright, quantile)]
    bg = np.median(top, axis=0).astype(np.float32)
    mean = float(bg.mean())
    if mean < GLASS_MIN_BRIGHTNESS:
        w = min(1.0, (GLASS_MIN_BRIGHTNESS - mean) / 40.0)
        bg = (1 - w) * bg + w * np.asarray(DEFAULT_GLASS, np.float32)
    return np.maximum(bg, 1.0).astype(np.float32)


def rgb_to_od(rgb: npt.NDArray[np.uint8], background: Sequence[float] | np.ndarray) -> FloatArray:
    """Optical density (log10) of each pixel relative to ``background``; never negative."""
    bg = np.asarray(background, np.float32)
    ratio = np.maximum(rgb.astype(np.float32), 1.0) / bg
    return np.clip(-np.log10(ratio), 0.0, MAX_OD).astype(np.float32)


def od_to_rgb(od: np.ndarray, glass: Sequence[float] | np.ndarray = DEFAULT_GLASS) -> np.ndarray:
    """Pixels seen through ``od`` (H, W, 3) lit by ``glass`` (per channel, or an (H, W, 3) map)."""
    out = np.asarray(glass, np.float32) * np.power(10.0, -od, dtype=np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def radial_window(size: int, *, inner: float = 0.36, outer: float = 0.5) -> FloatArray:
    """1 inside ``inner * size`` of the centre, cosine fall-off to 0 at ``outer * size``."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - c, xx - c) / size
    t = np.clip((r - inner) / (outer - inner), 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * t)).astype(np.float32)


def cell_alpha(
    crop: npt.NDArray[np.uint8],
    *,
    threshold: float = OD_MASK_THRESHOLD,
    feather_px: float = 2.0,
) -> tuple[FloatArray, FloatArray]:
    """Split a square cell crop into its optical density and a feathered alpha.

    Returns ``(od, alpha)``: ``od`` (H, W, 3) float32 relative to the crop's own background
    (``estimate_background``) and ``alpha`` (H, W) float32 in [0, 1]: the stained object under
    the crop centre (a CRIC crop is centred on a nucleus), holes filled, edges feathered by a
    Gaussian of ``feather_px`` and faded out towards the crop border so no square edge shows.
    Other cells cut by the crop border are dropped when they do not touch the central one.
    """
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB crop, got shape {crop.shape}")
    od = rgb_to_od(crop, estimate_background(crop))
    h, w = od.shape[:2]
    stained = ndi.gaussian_filter(od.max(axis=2), 1.0) > threshold
    labels, n = ndi.label(stained)
    mask = np.zeros((h, w), dtype=bool)
    if n:
        yy, xx = np.mgrid[0:h, 0:w]
        dist = np.hypot(yy - (h - 1) / 2.0, xx - (w - 1) / 2.0)
        nearest = np.asarray(ndi.minimum(dist, labels, range(1, n + 1)), dtype=np.float64)
        # objects touching the central disc, else the one closest to the centre
        ids = np.flatnonzero(nearest <= 0.12 * min(h, w)) + 1
        if ids.size == 0:
            ids = np.array([int(np.argmin(nearest)) + 1])
        mask = np.isin(labels, ids)
        mask = ndi.binary_fill_holes(ndi.binary_dilation(mask, iterations=2))
    alpha = ndi.gaussian_filter(mask.astype(np.float32), feather_px)
    alpha *= radial_window(max(h, w))[:h, :w]
    return od, np.clip(alpha, 0.0, 1.0).astype(np.float32)


def composite(
    canvas: FloatArray,
    od: np.ndarray,
    alpha: np.ndarray,
    x: int,
    y: int,
    *,
    gain: Sequence[float] | np.ndarray | float = 1.0,
) -> FloatArray:
    """Add ``alpha * od * gain`` onto the OD ``canvas`` with its top-left corner at (x, y).

    In place (and returned). Parts falling outside the canvas are clipped; ``gain`` scales the
    optical density per channel (stain strength / colour variation).
    """
    ch, cw = canvas.shape[:2]
    ph, pw = od.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + pw, cw), min(y + ph, ch)
    if x1 <= x0 or y1 <= y0:
        return canvas
    sub_od = od[y0 - y : y1 - y, x0 - x : x1 - x]
    sub_a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    canvas[y0:y1, x0:x1] += sub_a * sub_od * np.asarray(gain, np.float32)
    return canvas
