"""Where every object on a synthetic slide goes: pure numpy, no pixels, no I/O.

A ``Layout`` lists the placed cells (real kit crops) and background sprites (near-empty crops
used as debris texture) with their level-0 centres, orientation, scale, blur and colour gain,
plus a uniform-grid spatial index so a renderer can find the objects touching any region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from cytoscreen.synth.kit import ABNORMAL_CLASSES, CellKit, severity
from cytoscreen.synth.noise import fbm

SlideLabel = Literal["negative", "positive", "blank"]
RENDER_MPP_FALLBACK = 0.25  # scale used to draw slides written without an mpp
BUCKET_PX = 256  # spatial index cell, level-0 pixels


@dataclass(frozen=True)
class SlideSpec:
    """What to generate. Sizes are level-0 pixels; ``height`` defaults to ``size``."""

    size: int = 4096
    height: int | None = None
    label: SlideLabel = "negative"
    seed: int = 0
    mpp: float | None = 0.25  # None writes a slide without resolution tags
    worst_bethesda: str | None = None  # positive only: default = a random available class
    n_abnormal: int | None = None  # positive only: default = 0.2% of cells, at least 3
    # share of the cell circle's glass covered by cells: 0.06 gives ~220 cells/mm^2 in cellular
    # patches separated by bare glass (~75,000 cells on a 20 mm preparation; ~55% of its
    # 224-px patches at 0.5 um/px hold cells)
    cell_bearing: float = 0.06
    clustering: float = 1.0  # 1: cellular areas between bare glass; 0: cells everywhere
    circle_fraction: float = 0.96  # diameter of the cell circle / shorter slide side
    debris_per_mm2: float = 40.0  # background-only sprites (real near-empty crops)
    tile: int = 256
    quality: int = 85

    @property
    def width(self) -> int:
        return self.size

    @property
    def full_height(self) -> int:
        return self.height if self.height is not None else self.size

    def validate(self) -> None:
        if self.size < 64 or self.full_height < 64:
            raise ValueError(f"slide must be at least 64 x 64 px, got {self.size}")
        if self.label not in ("negative", "positive", "blank"):
            raise ValueError(f"label must be negative, positive or blank, got {self.label!r}")
        if self.worst_bethesda is not None and self.worst_bethesda not in ABNORMAL_CLASSES:
            raise ValueError(f"worst_bethesda must be one of {ABNORMAL_CLASSES}")
        if not 0.0 <= self.cell_bearing < 0.95:
            raise ValueError("cell_bearing must be in [0, 0.95)")


@dataclass(frozen=True)
class Layout:
    """Placed objects. Sprite index ``< n_cells_kit`` is a kit cell, else a background crop."""

    width: int
    height: int
    circle: tuple[float, float, float]  # centre x, centre y, radius (level 0)
    render_mpp: float
    cx: npt.NDArray[np.float64]
    cy: npt.NDArray[np.float64]
    sprite: npt.NDArray[np.int64]
    orient: npt.NDArray[np.int8]  # dihedral orientation 0-7
    scale: npt.NDArray[np.float32]  # quantised size factor (level-0 px per crop px)
    blur: npt.NDArray[np.int8]  # focus level 0 (sharp), 1, 2
    gain: npt.NDArray[np.float32]  # (N, 3) per-object OD gain (stain x cell variation)
    is_cell: npt.NDArray[np.bool_]
    abnormal: npt.NDArray[np.bool_]
    bucket_start: npt.NDArray[np.int64]  # objects sorted by bucket; CSR offsets per bucket
    buckets_x: int
    max_half: float  # largest object half-extent, level-0 px

    def __len__(self) -> int:
        return int(self.cx.size)

    def query(self, x0: float, y0: float, x1: float, y1: float) -> npt.NDArray[np.int64]:
        """Indices of the objects whose extent may touch the level-0 box [x0, x1) x [y0, y1)."""
        m = self.max_half
        bx0 = max(0, int((x0 - m) // BUCKET_PX))
        bx1 = min(self.buckets_x - 1, int((x1 + m) // BUCKET_PX))
        n_rows = (self.bucket_start.size - 1) // self.buckets_x
        by0 = max(0, int((y0 - m) // BUCKET_PX))
        by1 = min(n_rows - 1, int((y1 + m) // BUCKET_PX))
        if bx1 < bx0 or by1 < by0:
            return np.zeros(0, np.int64)
        parts = [
            np.arange(
                self.bucket_start[by * self.buckets_x + bx0],
                self.bucket_start[by * self.buckets_x + bx1 + 1],
            )
            for by in range(by0, by1 + 1)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


SCALES = np.array([0.9, 1.0, 1.12], np.float32)


def density_field(
    xs: np.ndarray, ys: np.ndarray, seed: int, render_mpp: float, clustering: float = 1.0
) -> np.ndarray:
    """Where cells settle (0 = bare, 1 = dense): smooth patches ~0.5-2 mm across.

    ``clustering`` 1 leaves bare glass between cellular areas; 0 spreads cells everywhere
    (with a floor of 0.12), which suits tiny test slides.
    """
    s = 0.25 / render_mpp
    n = fbm(xs, ys, [8000 * s, 2500 * s, 800 * s], seed + 101, gains=[1.0, 0.6, 0.3])
    c = float(np.clip(clustering, 0.0, 1.0))
    t = np.clip((n - (0.32 + 0.13 * c)) / (0.36 - 0.06 * c), 0.0, 1.0)
    floor = 0.12 * (1.0 - c)
    out: np.ndarray = floor + (1.0 - floor) * t * t * (3 - 2 * t)
    return out


def _circle(w: int, h: int, frac: float) -> tuple[float, float, float]:
    return w / 2.0, h / 2.0, frac * min(w, h) / 2.0


def _uniform_in_circle(
    rng: np.random.Generator, n: int, circle: tuple[float, float, float], margin: float
) -> tuple[np.ndarray, np.ndarray]:
    cx, cy, r = circle
    rr = max(r - margin, 1.0) * np.sqrt(rng.random(n))
    th = rng.random(n) * 2 * np.pi
    return cx + rr * np.cos(th), cy + rr * np.sin(th)


def _calibrate(g: np.ndarray, target: float, footprint: float) -> float:
    """Intensity (objects per px^2 at g = 1) for which ``mean(1 - exp(-lam g A)) = target``."""
    if target <= 0:
        return 0.0
    lo, hi = 0.0, 1.0 / footprint
    while np.mean(1 - np.exp(-hi * g * footprint)) < target and hi < 3.0 / footprint:
        hi *= 2
    for _ in range(50):
        mid = (lo + hi) / 2
        if np.mean(1 - np.exp(-mid * g * footprint)) < target:
            lo = mid
        else:
            hi = mid
    return min((lo + hi) / 2, 3.0 / footprint)  # at most ~95% cover where g = 1


def plan_layout(spec: SlideSpec, kit: CellKit, footprints: npt.NDArray[np.float64]) -> Layout:
    """Place cells and debris for ``spec``. ``footprints``: alpha > 0.5 area of each kit crop."""
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    w, h = spec.width, spec.full_height
    render_mpp = spec.mpp if spec.mpp is not None else RENDER_MPP_FALLBACK
    base = kit.mpp / render_mpp  # level-0 px per crop px, before per-cell scale
    circle = _circle(w, h, spec.circle_fraction)
    crop = float(kit.images.shape[1])
    margin = 0.3 * crop * base
    field_seed = int(rng.integers(2**31))

    cxs: list[np.ndarray] = []
    cys: list[np.ndarray] = []
    sprites: list[np.ndarray] = []
    abn: list[np.ndarray] = []
    if spec.label != "blank":
        normals = kit.indices_of("NILM")
        if normals.size == 0:
            raise ValueError(f"the cell kit ({kit.source}) has no NILM cells")
        # calibrate group intensity on a coarse view of the density field
        gx = np.linspace(circle[0] - circle[2], circle[0] + circle[2], 160)
        gy = np.linspace(circle[1] - circle[2], circle[1] + circle[2], 160)
        g = density_field(gx, gy, field_seed, render_mpp, spec.clustering)
        inside = np.hypot(*np.meshgrid(gx - circle[0], gy - circle[1])) < circle[2]
        area = float(np.mean(footprints[normals])) * (base * float(np.mean(SCALES))) ** 2
        group_mean = 1.6
        lam = _calibrate(g[inside], spec.cell_bearing, area)  # cells per px^2 where g = 1
        n_try = rng.poisson(lam / group_mean * math.pi * circle[2] ** 2)
        px, py = _uniform_in_circle(rng, n_try, circle, margin)
        keep = rng.random(n_try) < density_field_at(px, py, field_seed, render_mpp, spec.clustering)
        px, py = px[keep], py[keep]
        # 80% single cells, 20% groups of 2-6 overlapping cells
        sizes = np.where(rng.random(px.size) < 0.8, 1, rng.integers(2, 7, px.size))
        px, py = np.repeat(px, sizes), np.repeat(py, sizes)
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if sizes.size else sizes
        spread = np.where(np.isin(np.arange(px.size), first), 0.0, 0.35 * crop * base)
        px = px + rng.normal(0, 1, px.size) * spread
        py = py + rng.normal(0, 1, py.size) * spread
        r_ok = np.hypot(px - circle[0], py - circle[1]) < circle[2] - margin
        px, py = px[r_ok], py[r_ok]
        cxs.append(px)
        cys.append(py)
        sprites.append(rng.choice(normals, px.size))
        abn.append(np.zeros(px.size, bool))
        if spec.label == "positive":
            ax, ay, asp = _abnormal_cells(spec, kit, rng, circle, margin, px.size, field_seed)
            cxs.append(ax)
            cys.append(ay)
            sprites.append(asp)
            abn.append(np.ones(ax.size, bool))
    n_cells = int(sum(a.size for a in abn))
    # background sprites: real near-empty crops (debris, bacteria) under the cells
    n_bg = 0
    if kit.background.shape[0] and spec.label != "blank":
        mm2 = math.pi * (circle[2] * render_mpp / 1000) ** 2
        n_bg = int(rng.poisson(spec.debris_per_mm2 * mm2))
        bx, by = _uniform_in_circle(rng, n_bg, circle, margin)
        cxs.insert(0, bx)
        cys.insert(0, by)
        sprites.insert(0, len(kit) + rng.integers(0, kit.background.shape[0], n_bg))
        abn.insert(0, np.zeros(n_bg, bool))
    cx = np.concatenate(cxs) if cxs else np.zeros(0)
    cy = np.concatenate(cys) if cys else np.zeros(0)
    sprite = np.concatenate(sprites).astype(np.int64) if sprites else np.zeros(0, np.int64)
    abnormal = np.concatenate(abn) if abn else np.zeros(0, bool)
    n = cx.size
    is_cell = np.arange(n) >= n_bg
    assert int(is_cell.sum()) == n_cells
    slide_gain = np.exp(rng.normal(0, 0.08, 3))
    cell_gain = np.exp(rng.normal(0, 0.06, (n, 3)) + rng.normal(0, 0.1, (n, 1)))
    gain = (slide_gain * cell_gain).astype(np.float32)
    gain[~is_cell] = slide_gain.astype(np.float32)
    orient = rng.integers(0, 8, n).astype(np.int8)
    scale = (SCALES[rng.integers(0, SCALES.size, n)] * base).astype(np.float32)
    blur = rng.choice(3, n, p=[0.6, 0.3, 0.1]).astype(np.int8)
    return _indexed(
        w, h, circle, render_mpp, cx, cy, sprite, orient, scale, blur, gain, is_cell, abnormal,
        max_half=float(crop * scale.max(initial=base) * math.sqrt(2) / 2 + 2),
    )  # fmt: skip


def density_field_at(
    px: np.ndarray, py: np.ndarray, seed: int, render_mpp: float, clustering: float = 1.0
) -> np.ndarray:
    """``density_field`` at scattered points (evaluated in small batches of a coarse grid)."""
    if px.size == 0:
        return np.zeros(0)
    step = 64.0  # the field varies over thousands of px: sample a grid and look up
    x0, y0 = float(px.min()), float(py.min())
    xs = np.arange(x0, float(px.max()) + step, step)
    ys = np.arange(y0, float(py.max()) + step, step)
    grid = density_field(xs, ys, seed, render_mpp, clustering)
    ix = np.clip(np.round((px - x0) / step).astype(np.int64), 0, xs.size - 1)
    iy = np.clip(np.round((py - y0) / step).astype(np.int64), 0, ys.size - 1)
    out: np.ndarray = grid[iy, ix]
    return out


def _abnormal_cells(
    spec: SlideSpec,
    kit: CellKit,
    rng: np.random.Generator,
    circle: tuple[float, float, float],
    margin: float,
    n_normal: int,
    field_seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    present = [c for c in kit.classes() if c != "NILM"]
    if not present:
        raise ValueError(f"the cell kit ({kit.source}) has no abnormal cells for a positive slide")
    if spec.worst_bethesda is not None:
        worst = spec.worst_bethesda
        if worst not in present:  # the kit split lacks it: the nearest milder class present
            milder = [c for c in present if severity(c) <= severity(worst)]
            worst = milder[-1] if milder else present[0]
    else:
        worst = present[int(rng.integers(len(present)))]
    n = spec.n_abnormal if spec.n_abnormal is not None else max(3, round(0.002 * n_normal))
    n = max(1, int(n))
    allowed = [c for c in present if severity(c) <= severity(worst)]
    classes = [worst] + [allowed[int(i)] for i in rng.integers(0, len(allowed), n - 1)]
    sprite = np.array([rng.choice(kit.indices_of(c)) for c in classes], np.int64)
    # where the cells are (density-weighted), like the normal cells around them
    x, y = _uniform_in_circle(rng, 40 * n, circle, margin)
    render_mpp = spec.mpp if spec.mpp is not None else RENDER_MPP_FALLBACK
    g = density_field_at(x, y, field_seed, render_mpp, spec.clustering)
    ok = np.flatnonzero(rng.random(x.size) < g)
    pick = ok[:n] if ok.size >= n else np.arange(n)
    return x[pick], y[pick], sprite


def _indexed(
    w: int,
    h: int,
    circle: tuple[float, float, float],
    render_mpp: float,
    cx: np.ndarray,
    cy: np.ndarray,
    sprite: np.ndarray,
    orient: np.ndarray,
    scale: np.ndarray,
    blur: np.ndarray,
    gain: np.ndarray,
    is_cell: np.ndarray,
    abnormal: np.ndarray,
    *,
    max_half: float,
) -> Layout:
    nbx, nby = -(-w // BUCKET_PX), -(-h // BUCKET_PX)
    bx = np.clip((cx // BUCKET_PX).astype(np.int64), 0, nbx - 1)
    by = np.clip((cy // BUCKET_PX).astype(np.int64), 0, nby - 1)
    key = by * nbx + bx
    order = np.argsort(key, kind="stable")
    start = np.searchsorted(key[order], np.arange(nbx * nby + 1))
    return Layout(
        width=w,
        height=h,
        circle=circle,
        render_mpp=render_mpp,
        cx=cx[order],
        cy=cy[order],
        sprite=sprite[order],
        orient=orient[order],
        scale=scale[order],
        blur=blur[order],
        gain=gain[order],
        is_cell=is_cell[order],
        abnormal=abnormal[order],
        bucket_start=start.astype(np.int64),
        buckets_x=nbx,
        max_half=max_half,
    )
