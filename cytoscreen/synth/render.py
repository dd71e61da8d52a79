"""Render any region of any pyramid level of a planned slide, in bounded memory.

The background is a function of level-0 coordinates (``noise.fbm``); cells are found with the
layout's spatial index, resampled to the level's pixel size (cached, LRU with a byte budget)
and added as optical density (``compose``). Nothing ever holds more than one region.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize

from cytoscreen.synth.compose import (
    cell_alpha,
    estimate_background,
    od_to_rgb,
    radial_window,
    rgb_to_od,
)
from cytoscreen.synth.kit import CellKit
from cytoscreen.synth.layout import Layout
from cytoscreen.synth.noise import fbm

BLUR_SIGMAS = (0.0, 0.9, 1.8)  # level-0 px Gaussian per focus level


class SlideRenderer:
    """``render(level, x, y, w, h)`` -> (h, w, 3) uint8, for ``write_pyramidal_tiff``."""

    def __init__(
        self,
        layout: Layout,
        kit: CellKit,
        *,
        seed: int,
        factor: int = 2,
        cache_mb: float = 512.0,
    ) -> None:
        self.layout = layout
        self.factor = factor
        self.seed = seed
        rng = np.random.default_rng(seed + 17)
        self.glass = np.array([241.0, 240.0, 243.0]) + rng.normal(0, 1.5, 3)
        # faint proteinaceous background tint (OD per channel), blue-green or pinkish
        self.tint = np.array([0.030, 0.018, 0.016]) * np.exp(rng.normal(0, 0.25, 3))
        self.kit = kit
        self.crop = int(kit.images.shape[1])
        self._sprites: dict[int, np.ndarray] = {}
        self._cache: OrderedDict[tuple[int, float, int, int], np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        sc = 0.25 / layout.render_mpp
        self.octaves = [6000 * sc, 1500 * sc, 300 * sc, 60 * sc, 14 * sc]
        self._budget = int(cache_mb * 2**20)

    def _sprite(self, index: int) -> np.ndarray:
        """Premultiplied OD layer (alpha x od) of a kit cell or a background crop, at crop size."""
        layer = self._sprites.get(index)
        if layer is None:
            kit = self.kit
            if index < len(kit):
                od, alpha = cell_alpha(kit.images[index])
                layer = od * alpha[..., None]
            else:
                crop = kit.background[index - len(kit)]
                od = rgb_to_od(crop, estimate_background(crop, quantile=0.6))
                layer = od * radial_window(crop.shape[0], inner=0.25)[..., None]
            layer = layer.astype(np.float32)
            self._sprites[index] = layer
        return layer

    # -- background -------------------------------------------------------------------------
    def background_od(self, xs: np.ndarray, ys: np.ndarray, pixel: float) -> np.ndarray:
        """Optical density of glass + preparation background at level-0 coordinates."""
        lay = self.layout
        s = 0.25 / lay.render_mpp
        ccx, ccy, rad = lay.circle
        xs32, ys32 = xs.astype(np.float32), ys.astype(np.float32)
        r = np.hypot(ys32[:, None] - np.float32(ccy), xs32[None, :] - np.float32(ccx))
        rim_w = 120 * s + pixel
        r_min, r_max = float(r.min()), float(r.max())
        tint = self.tint.astype(np.float32)
        od = np.zeros((ys.size, xs.size, 3), np.float32)
        if r_min < rad:
            tex = fbm(xs, ys, self.octaves, self.seed + 3, pixel=pixel).astype(np.float32)
            amount = np.float32(0.3) + np.float32(1.4) * np.clip(tex, 0, 1) ** 1.5
            if r_max > rad - pixel:  # the circle's edge crosses this region
                amount *= np.clip((np.float32(rad) - r) / np.float32(pixel) + 0.5, 0.0, 1.0)
            od += amount[..., None] * tint
        if r_max > rad - 4 * rim_w and r_min < rad + 4 * rim_w:
            rim = np.float32(0.035) * np.exp(-(((r - np.float32(rad)) / np.float32(rim_w)) ** 2))
            od += rim[..., None] * np.array([0.8, 1.0, 0.9], np.float32)
        return od

    # -- objects ----------------------------------------------------------------------------
    def _patch(self, sprite: int, scale: float, blur: int, level: int) -> np.ndarray:
        d = float(self.factor**level)
        sigma = BLUR_SIGMAS[blur] / d
        blur_key = blur if sigma > 0.3 else 0
        key = (sprite, round(scale, 4), blur_key, level)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        src = self._sprite(sprite)
        n = max(1, round(src.shape[0] * scale / d))
        if n >= src.shape[0] * 0.75:  # near full size: plain bilinear zoom is enough (fast)
            f = n / src.shape[0]
            out = ndi.zoom(src, (f, f, 1), order=1, grid_mode=True, mode="grid-constant")
        else:
            out = resize(src, (n, n, 3), order=1, anti_aliasing=True, mode="constant")
        if blur_key:
            out = ndi.gaussian_filter(out, (sigma, sigma, 0))
        patch = out.astype(np.float16)
        self._cache[key] = patch
        self._cache_bytes += patch.nbytes
        while self._cache_bytes > self._budget and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return patch

    def _oriented(
        self, sprite: int, scale: float, blur: int, orient: int, level: int
    ) -> np.ndarray:
        patch = self._patch(sprite, scale, blur, level)
        return np.rot90(patch[:, ::-1] if orient >= 4 else patch, orient % 4)

    def render(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        d = float(self.factor**level)
        xs = (x + np.arange(w) + 0.5) * d
        ys = (y + np.arange(h) + 0.5) * d
        canvas = self.background_od(xs, ys, d)
        lay = self.layout
        idx = lay.query(x * d, y * d, (x + w) * d, (y + h) * d)
        if idx.size:
            n = np.maximum(1, np.round(self.crop * lay.scale[idx] / d)).astype(np.int64)
            px = np.floor(lay.cx[idx] / d - n / 2 + 0.5).astype(np.int64) - x
            py = np.floor(lay.cy[idx] / d - n / 2 + 0.5).astype(np.int64) - y
            hit = (px < w) & (py < h) & (px + n > 0) & (py + n > 0)
            for i, ox, oy in zip(
                idx[hit].tolist(), px[hit].tolist(), py[hit].tolist(), strict=True
            ):
                patch = self._oriented(
                    int(lay.sprite[i]),
                    float(lay.scale[i]),
                    int(lay.blur[i]),
                    int(lay.orient[i]),
                    level,
                )
                m = patch.shape[0]
                x0, y0 = max(ox, 0), max(oy, 0)
                x1, y1 = min(ox + m, w), min(oy + m, h)
                canvas[y0:y1, x0:x1] += patch[y0 - oy : y1 - oy, x0 - ox : x1 - ox] * lay.gain[i]
        return od_to_rgb(canvas, self.glass)
