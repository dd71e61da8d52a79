"""Render any region of any pyramid level of a planned slide, in bounded memory.

The background is a function of level-0 coordinates (``noise.fbm``); objects are found with the
layout's spatial index, resampled to the level's pixel size, blurred to their focus level
(cached, LRU with a byte budget), oriented, and added as optical density (Beer-Lambert: where
pieces overlap they come out darker, as cells on glass do). Nothing ever holds more than one
region.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize

from cytoscreen.synth.compose import od_to_rgb
from cytoscreen.synth.kit import CellKit
from cytoscreen.synth.layout import BLUR_STEP_UM, Layout
from cytoscreen.synth.noise import fbm


class SpriteCache:
    """An LRU of resampled, blurred sprites with a byte budget. Keys name the sprite, its scale,
    focus level and pyramid level, not the slide, so the renderers of several slides of one
    kit can share one cache."""

    def __init__(self, cache_mb: float) -> None:
        self.items: OrderedDict[tuple[int, float, int, int], np.ndarray] = OrderedDict()
        self.bytes = 0
        self.budget = int(cache_mb * 2**20)

    def get(self, key: tuple[int, float, int, int]) -> np.ndarray | None:
        hit = self.items.get(key)
        if hit is not None:
            self.items.move_to_end(key)
        return hit

    def put(self, key: tuple[int, float, int, int], arr: np.ndarray) -> np.ndarray:
        patch = np.asarray(arr, np.float16)
        self.items[key] = patch
        self.bytes += patch.nbytes
        while self.bytes > self.budget and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.nbytes
        return patch


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
        stain: float = 1.0,
        cache: SpriteCache | None = None,
    ) -> None:
        self.layout = layout
        self.factor = factor
        self.seed = seed
        rng = np.random.default_rng(seed + 17)
        self.glass = np.array([241.0, 240.0, 243.0]) + rng.normal(0, 1.5, 3)
        # faint proteinaceous background (OD per channel), blue-green or pinkish; denser under
        # a conventional smear (mucus, the smear's own film)
        tint = np.array([0.030, 0.018, 0.016]) * np.exp(rng.normal(0, 0.25, 3))
        self.tint = tint * stain * (1.8 if layout.prep == "conventional" else 1.0)
        self.kit = kit
        self._cache = cache if cache is not None else SpriteCache(cache_mb)
        sc = 0.25 / layout.render_mpp
        self.octaves = [6000 * sc, 1500 * sc, 300 * sc, 60 * sc, 14 * sc]
        used, inverse = np.unique(layout.sprite, return_inverse=True)
        sizes = np.array([kit.sprite_size(int(i)) for i in used], np.float64).reshape(-1, 2)
        sw, sh = sizes[inverse, 0], sizes[inverse, 1]
        odd = (layout.orient % 2).astype(bool)
        self._ow = np.where(odd, sh, sw) * layout.scale  # oriented level-0 size of each object
        self._oh = np.where(odd, sw, sh) * layout.scale

    # -- background -------------------------------------------------------------------------
    def background_od(self, xs: np.ndarray, ys: np.ndarray, pixel: float) -> np.ndarray:
        """Optical density of glass + preparation background at level-0 coordinates."""
        lay = self.layout
        tint = self.tint.astype(np.float32)
        od = np.zeros((ys.size, xs.size, 3), np.float32)
        tex = fbm(xs, ys, self.octaves, self.seed + 3, pixel=pixel).astype(np.float32)
        amount = np.float32(0.3) + np.float32(1.4) * np.clip(tex, 0, 1) ** 1.5
        if lay.prep == "liquid":
            ccx, ccy, rad = lay.circle
            r = np.hypot(
                ys.astype(np.float32)[:, None] - np.float32(ccy),
                xs.astype(np.float32)[None, :] - np.float32(ccx),
            )
            s = 0.25 / lay.render_mpp
            rim_w = 120 * s + pixel
            r_min, r_max = float(r.min()), float(r.max())
            if r_min >= rad:
                amount = np.zeros_like(amount)
            elif r_max > rad - pixel:  # the circle's edge crosses this region
                amount *= np.clip((np.float32(rad) - r) / np.float32(pixel) + 0.5, 0.0, 1.0)
            if r_max > rad - 4 * rim_w and r_min < rad + 4 * rim_w:
                rim = np.float32(0.035) * np.exp(
                    -(((r - np.float32(rad)) / np.float32(rim_w)) ** 2)
                )
                od += rim[..., None] * np.array([0.8, 1.0, 0.9], np.float32)
        else:  # the smear's film fades out over ~100 um beyond the band
            ccx, ccy, _ = lay.circle
            ang, half_w, half_l = lay.band
            c, s_ = np.float32(np.cos(ang)), np.float32(np.sin(ang))
            dx = xs.astype(np.float32)[None, :] - np.float32(ccx)
            dy = ys.astype(np.float32)[:, None] - np.float32(ccy)
            across = np.abs(-dx * s_ + dy * c) - np.float32(half_w)
            along = np.abs(dx * c + dy * s_) - np.float32(half_l)
            fade = np.float32(400.0 * 0.25 / lay.render_mpp)
            amount *= np.clip(1.0 - np.maximum(across, along) / fade, 0.0, 1.0)
        od += amount[..., None] * tint
        return od

    # -- objects ----------------------------------------------------------------------------
    def _blurred(self, sprite: int, blur: int) -> np.ndarray:
        """The sprite at kit resolution, blurred to focus level ``blur`` (cached)."""
        key = (sprite, -1.0, blur, -1)
        hit = self._cache.get(key)
        if hit is None:
            sigma = blur * BLUR_STEP_UM / self.kit.mpp
            src = self.kit.layer(sprite)
            hit = self._cache.put(key, ndi.gaussian_filter(src, (sigma, sigma, 0), mode="constant"))
        return hit

    def _patch(self, sprite: int, scale: float, blur: int, level: int) -> np.ndarray:
        d = float(self.factor**level)
        # blur is applied at the kit's resolution, once per sprite and focus level; at coarse
        # levels a blur under ~0.3 px no longer shows
        sigma_px = blur * BLUR_STEP_UM / (self.layout.render_mpp * d)
        blur_key = blur if sigma_px > 0.3 else 0
        key = (sprite, round(scale, 3), blur_key, level)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        src = self._blurred(sprite, blur_key) if blur_key else self.kit.layer(sprite)
        h, w = src.shape[:2]
        nh, nw = max(1, round(h * scale / d)), max(1, round(w * scale / d))
        if (nh, nw) == (h, w):
            out = src
        elif min(nh / h, nw / w) >= 0.75:  # near full size: plain bilinear zoom is enough
            out = ndi.zoom(
                np.asarray(src, np.float32), (nh / h, nw / w, 1), order=1, grid_mode=True,
                mode="grid-constant",
            )  # fmt: skip
        else:
            out = resize(src, (nh, nw, 3), order=1, anti_aliasing=True, mode="constant")
        return self._cache.put(key, out)

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
            nw = np.maximum(1, np.round(self._ow[idx] / d)).astype(np.int64)
            nh = np.maximum(1, np.round(self._oh[idx] / d)).astype(np.int64)
            ox = np.floor(lay.cx[idx] / d - nw / 2 + 0.5).astype(np.int64) - x
            oy = np.floor(lay.cy[idx] / d - nh / 2 + 0.5).astype(np.int64) - y
            hit = (ox < w) & (oy < h) & (ox + nw > 0) & (oy + nh > 0)
            for i, px, py in zip(
                idx[hit].tolist(), ox[hit].tolist(), oy[hit].tolist(), strict=True
            ):
                patch = self._oriented(
                    int(lay.sprite[i]),
                    float(lay.scale[i]),
                    int(lay.blur[i]),
                    int(lay.orient[i]),
                    level,
                )
                ph, pw = patch.shape[:2]
                x0, y0 = max(px, 0), max(py, 0)
                x1, y1 = min(px + pw, w), min(py + ph, h)
                if x1 > x0 and y1 > y0:
                    canvas[y0:y1, x0:x1] += (
                        patch[y0 - py : y1 - py, x0 - px : x1 - px] * lay.gain[i]
                    )
        return od_to_rgb(canvas, self.glass)
