"""Training patches that look like slide patches: CRIC crops composited as optical density.

Uses the slide generator's Beer-Lambert compositing (``cytoscreen.synth.compose``) and the same
kind of procedural background (``cytoscreen.synth.noise.fbm`` times a faint stain tint, under
pale glass), so a training patch and a patch cut from a generated slide are made the same way.

CRIC crops carry no pixel size; 0.25 um/px is the working assumption, so a 100-px crop becomes
a ~50-px sprite at 0.5 um/px. Cells are placed off-centre at random positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from skimage.transform import resize

from cytoscreen.synth.compose import (
    cell_alpha,
    composite,
    estimate_background,
    od_to_rgb,
    radial_window,
    rgb_to_od,
)
from cytoscreen.synth.noise import fbm

RGB = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

GLASS = np.array([241.0, 240.0, 243.0], np.float32)  # as SlideRenderer's glass
TINT = np.array([0.030, 0.018, 0.016], np.float32)  # as SlideRenderer's background tint


@dataclass(frozen=True)
class Sprite:
    """A premultiplied optical-density layer (alpha x OD) at the patch resolution."""

    layer: F32  # (h, w, 3)

    @property
    def size(self) -> int:
        return int(self.layer.shape[0])


def _resample(layer: F32, factor: float) -> F32:
    h, w = layer.shape[:2]
    size = (max(1, round(h * factor)), max(1, round(w * factor)), layer.shape[2])
    out = resize(layer, size, order=1, anti_aliasing=factor < 1, preserve_range=True)
    return np.asarray(out, np.float32)


def cell_sprite(crop: RGB, crop_mpp: float, target_mpp: float) -> Sprite:
    """The central cell of a crop (``cell_alpha``), resampled to ``target_mpp``."""
    od, alpha = cell_alpha(crop)
    return Sprite(_resample(od * alpha[..., None], crop_mpp / target_mpp))


def debris_sprite(crop: RGB, crop_mpp: float, target_mpp: float) -> Sprite:
    """A near-empty crop as faint background texture, faded towards its border (as in slides)."""
    od = rgb_to_od(crop, estimate_background(crop, quantile=0.6))
    layer = od * radial_window(crop.shape[0], inner=0.25)[: crop.shape[0], : crop.shape[1], None]
    return Sprite(_resample(layer.astype(np.float32), crop_mpp / target_mpp))


def background_od(size: int, rng: np.random.Generator, mpp: float = 0.5) -> F32:
    """Glass plus proteinaceous background at ``mpp``: fbm texture times a random faint tint."""
    s = 0.25 / mpp  # the slide generator's octaves are in 0.25-um/px pixels
    octaves = [6000 * s, 1500 * s, 300 * s, 60 * s, 14 * s]
    x0, y0 = rng.integers(0, 1 << 20, 2)
    xs = (x0 + np.arange(size) + 0.5).astype(np.float64)
    ys = (y0 + np.arange(size) + 0.5).astype(np.float64)
    tex = fbm(xs, ys, octaves, int(rng.integers(0, 1 << 31))).astype(np.float32)
    amount = 0.3 + 1.4 * np.clip(tex, 0, 1) ** 1.5
    tint = TINT * np.exp(rng.normal(0, 0.25, 3)).astype(np.float32)
    return (amount[..., None] * tint).astype(np.float32)


def background_rgb(size: int, rng: np.random.Generator, mpp: float = 0.5) -> RGB:
    """An empty patch: background only."""
    return od_to_rgb(background_od(size, rng, mpp), random_glass(rng))


def random_glass(rng: np.random.Generator) -> F32:
    return (GLASS + rng.normal(0, 1.5, 3)).astype(np.float32)


def _orient(layer: F32, k: int) -> F32:
    out = layer[:, ::-1] if k >= 4 else layer
    return np.ascontiguousarray(np.rot90(out, k % 4))


def place(
    canvas: F32,
    sprite: Sprite,
    rng: np.random.Generator,
    *,
    margin: float = 0.5,
    gain_sd: float = 0.1,
) -> tuple[int, int]:
    """Add ``sprite`` at a random place, orientation and stain gain; returns its centre (x, y).

    The centre is kept at least ``margin * sprite size`` from the patch border, so the cell is
    (mostly) inside the patch.
    """
    size = canvas.shape[0]
    n = sprite.size
    lo = int(round(margin * n))
    hi = max(lo, size - lo)
    cx, cy = (int(v) for v in rng.integers(lo, hi + 1, 2))
    gain = np.exp(rng.normal(0, 0.06, 3) + rng.normal(0, gain_sd)).astype(np.float32)
    layer = _orient(sprite.layer, int(rng.integers(0, 8)))
    ones = np.ones(layer.shape[:2], np.float32)
    composite(canvas, layer, ones, cx - n // 2, cy - n // 2, gain=gain)
    return cx, cy


def render_patch(
    main: Sprite | None,
    neighbours: Sequence[Sprite],
    *,
    patch_px: int,
    rng: np.random.Generator,
    mpp: float = 0.5,
) -> RGB:
    """A patch: background, ``neighbours`` (e.g. NILM cells) and the ``main`` sprite on top."""
    canvas = background_od(patch_px, rng, mpp)
    for sp in neighbours:
        place(canvas, sp, rng, margin=0.2)
    if main is not None:
        place(canvas, main, rng, margin=0.5)
    return od_to_rgb(canvas, random_glass(rng))
