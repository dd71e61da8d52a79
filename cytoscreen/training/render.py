"""Small local renderer: a CRIC cell crop placed on a pale slide-like background as a patch at
the model's resolution. (Local until cytoscreen.synth offers shared compositing functions.)

CRIC crops carry no pixel size; 0.25 um/px is the working assumption, so a 100-px crop becomes
~50 px at 0.5 um/px.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from skimage.transform import resize

RGB = npt.NDArray[np.uint8]


def rescale_crop(crop: RGB, crop_mpp: float, target_mpp: float) -> RGB:
    """Resample a crop from ``crop_mpp`` to ``target_mpp`` (anti-aliased when shrinking)."""
    factor = crop_mpp / target_mpp
    h, w = crop.shape[:2]
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    out = resize(crop, size, order=1, anti_aliasing=factor < 1, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def slide_background(size: int, rng: np.random.Generator) -> RGB:
    """Pale, slightly uneven glass-and-mount colour with a little sensor noise."""
    base = np.array([232.0, 228.0, 226.0]) + rng.normal(0.0, 6.0, 3)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    tilt = rng.normal(0.0, 4.0, 2)
    shade = tilt[0] * (yy - 0.5) + tilt[1] * (xx - 0.5)
    img = base[None, None, :] + shade[..., None] + rng.normal(0.0, 2.0, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _feather(h: int, w: int, width: int) -> npt.NDArray[np.float32]:
    """Alpha that rises from 0 at the crop border to 1 ``width`` pixels inside."""
    ry = np.minimum(np.arange(h), np.arange(h)[::-1]) / max(width, 1)
    rx = np.minimum(np.arange(w), np.arange(w)[::-1]) / max(width, 1)
    return np.clip(np.minimum.outer(ry, rx), 0.0, 1.0).astype(np.float32)


def composite(crop: RGB, background: RGB, rng: np.random.Generator, max_shift: int = 0) -> RGB:
    """Paste ``crop`` near the centre of ``background``: the crop's own border colour is matched
    to the background and its edges are feathered, so no square outline remains."""
    size = background.shape[0]
    h, w = crop.shape[:2]
    if h > size or w > size:
        raise ValueError(f"crop {h}x{w} does not fit in a {size}-px patch")
    border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]]).astype(np.float32)
    y0 = (size - h) // 2 + int(rng.integers(-max_shift, max_shift + 1))
    x0 = (size - w) // 2 + int(rng.integers(-max_shift, max_shift + 1))
    y0 = int(np.clip(y0, 0, size - h))
    x0 = int(np.clip(x0, 0, size - w))
    region = background[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    shifted = crop.astype(np.float32) - np.median(border, axis=0) + region.mean(axis=(0, 1))
    alpha = _feather(h, w, max(2, min(h, w) // 8))[..., None]
    out = background.copy()
    blended = alpha * shifted + (1.0 - alpha) * region
    out[y0 : y0 + h, x0 : x0 + w] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def render_cell_patch(
    crop: RGB,
    *,
    patch_px: int,
    crop_mpp: float,
    target_mpp: float,
    rng: np.random.Generator,
    max_shift: int = 0,
) -> RGB:
    cell = rescale_crop(crop, crop_mpp, target_mpp)
    return composite(cell, slide_background(patch_px, rng), rng, max_shift=max_shift)
