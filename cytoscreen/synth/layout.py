"""Where every object on a synthetic slide goes: pure numpy, no pixels, no I/O.

Two preparations a lab sees:

- **liquid** (liquid-based, e.g. ThinPrep/SurePath): a round cell area; pieces of real fields
  scattered over it, some in small groups; glass between them.
- **conventional** (a smear): a long band across the slide, denser, cells overlapping, in
  streaks along the direction of the smear.

Pieces (``synth.fields``) are placed until the slide holds its target number of labelled cells
(``SlideSpec.n_cells``, or ``density`` x cell area). A positive slide adds abnormal units until
it holds ``n_abnormal`` abnormal cells. Blood (red cells in streaks and clumps) and debris
specks are procedural. Every object has a dihedral orientation, a size jitter, a focus level
and a stain gain; the slide's stain strength, colour and focus are spec fields, so a slide set
can spread them and record them.

A ``Layout`` keeps a uniform-grid spatial index so a renderer finds the objects touching any
region.
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
Prep = Literal["liquid", "conventional"]
PREPS: tuple[str, ...] = ("liquid", "conventional")
RENDER_MPP_FALLBACK = 0.25  # scale used to draw slides written without an mpp
BUCKET_PX = 256  # spatial index cell, level-0 pixels
SIZE_JITTER = np.array([0.94, 1.0, 1.06], np.float32)  # per-piece size factors (few: cached)
BLUR_STEP_UM = 0.25  # focus levels are quantised to this (rendering caches per level)
SMEAR_FRACTION = 0.62  # share of a conventional slide's area the smear band covers (mean)


@dataclass(frozen=True)
class SlideSpec:
    """What to generate. Sizes are level-0 pixels; ``height`` defaults to ``size``.

    ``density`` is labelled cells per mm^2 of the cell-bearing area (the circle of a liquid-based
    preparation, the smear band of a conventional one); ``n_cells`` overrides it with a total.
    ``stain`` scales every optical density (stain strength), ``hue`` each channel's (colour),
    ``focus_um`` adds a Gaussian blur of that sigma to every object (out of focus).
    """

    size: int = 4096
    height: int | None = None
    label: SlideLabel = "negative"
    seed: int = 0
    mpp: float | None = 0.25  # None writes a slide without resolution tags
    prep: Prep = "liquid"
    density: float = 600.0
    n_cells: int | None = None
    worst_bethesda: str | None = None  # positive only: default = a random available class
    n_abnormal: int | None = None  # positive only: default = 0.2% of the cells, at least 3
    stain: float = 1.0
    hue: tuple[float, float, float] = (1.0, 1.0, 1.0)
    focus_um: float = 0.0
    blood: float = 0.0  # red blood cells per labelled cell
    debris_per_mm2: float = 15.0
    grouping: float = 0.25  # share of pieces placed close to another (small clusters)
    circle_fraction: float = 0.96  # liquid: diameter of the cell circle / shorter slide side
    tile: int = 256
    quality: int = 85  # JPEG quality of the written tiles

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
        if self.prep not in PREPS:
            raise ValueError(f"prep must be one of {PREPS}, got {self.prep!r}")
        if self.worst_bethesda is not None and self.worst_bethesda not in ABNORMAL_CLASSES:
            raise ValueError(f"worst_bethesda must be one of {ABNORMAL_CLASSES}")
        if self.density <= 0 or self.stain <= 0 or min(self.hue) <= 0:
            raise ValueError("density, stain and hue must be positive")
        if self.focus_um < 0 or self.blood < 0 or not 0 <= self.grouping <= 1:
            raise ValueError("focus_um and blood must be >= 0, grouping in [0, 1]")


def size_for(n_cells: int, density: float, prep: Prep = "liquid", mpp: float = 0.25) -> int:
    """Square slide side (px) whose cell area holds ``n_cells`` at ``density`` per mm^2."""
    area_um2 = n_cells / density * 1e6
    if prep == "liquid":
        side_um = 2.0 * math.sqrt(area_um2 / math.pi) / SlideSpec.circle_fraction
    else:
        side_um = math.sqrt(area_um2 / SMEAR_FRACTION)
    return int(math.ceil(side_um / mpp / 64.0) * 64)


@dataclass(frozen=True)
class Layout:
    """Placed objects (kit sprite indices) and the region that holds cells."""

    width: int
    height: int
    prep: str
    circle: tuple[float, float, float]  # liquid: centre x, y, radius; conventional: band centre
    area_mm2: float  # cell-bearing area
    band: tuple[float, float, float]  # conventional: angle (rad), half width, half length
    render_mpp: float
    cx: npt.NDArray[np.float64]
    cy: npt.NDArray[np.float64]
    sprite: npt.NDArray[np.int64]
    orient: npt.NDArray[np.int8]  # dihedral orientation 0-7 (mirror when >= 4, then rot90)
    scale: npt.NDArray[np.float32]  # level-0 px per kit px
    blur: npt.NDArray[np.int8]  # focus level: sigma = blur * BLUR_STEP_UM
    gain: npt.NDArray[np.float32]  # (N, 3) per-object OD gain (stain x colour x cell)
    is_piece: npt.NDArray[np.bool_]
    bucket_start: npt.NDArray[np.int64]  # objects sorted by bucket; CSR offsets per bucket
    buckets_x: int
    max_half: float  # largest object half-diagonal, level-0 px

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


def oriented_size(w: float, h: float, orient: int) -> tuple[float, float]:
    """(width, height) of a w x h sprite after dihedral orientation ``orient``."""
    return (h, w) if orient % 2 else (w, h)


def orient_points(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], w: float, h: float, orient: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Continuous sprite coordinates (0..w, 0..h) after ``orient`` (as ``np.rot90`` of the
    left-right mirrored array when ``orient >= 4``)."""
    if orient >= 4:
        x = w - x
    for _ in range(orient % 4):  # np.rot90 by 90 deg: (x, y) -> (y, w - x), then w <-> h
        x, y = y, w - x
        w, h = h, w
    return x, y


class _Region:
    """Where cells can be, and how densely (relative 0-1), for one preparation type."""

    def __init__(self, spec: SlideSpec, rng: np.random.Generator, render_mpp: float) -> None:
        w, h = spec.width, spec.full_height
        self.prep = spec.prep
        self.seed = int(rng.integers(2**31))
        self.scale = 0.25 / render_mpp
        if spec.prep == "liquid":
            r = spec.circle_fraction * min(w, h) / 2.0
            self.circle = (w / 2.0, h / 2.0, r)
            self.area_px = math.pi * r * r
            self.band = (0.0, 0.0, 0.0)
        else:  # a band along a random direction, ragged edges, streaks along it
            self.angle = float(rng.uniform(-0.35, 0.35))
            self.half_width = float(rng.uniform(0.27, 0.35)) * min(w, h)
            self.circle = (w / 2.0, h / 2.0, self.half_width)
            self.length_half = 0.47 * max(w, h)
            self.area_px = 4.0 * self.half_width * self.length_half * 0.93
            self.band = (self.angle, self.half_width, self.length_half)

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Relative density at level-0 points: 0 outside the cell area."""
        cx, cy, r = self.circle
        if self.prep == "liquid":
            return (np.hypot(x - cx, y - cy) < r).astype(np.float64)
        c, s = math.cos(self.angle), math.sin(self.angle)
        along = (x - cx) * c + (y - cy) * s
        across = -(x - cx) * s + (y - cy) * c
        sc = self.scale
        rag = fbm(along, np.zeros(1), [4000 * sc, 1000 * sc], self.seed + 7)[0] - 0.5
        edge = self.half_width * (1.0 + 0.25 * rag)
        # streaks: noise that varies fast across the smear, slowly along it
        streak = fbm(across, np.zeros(1), [900 * sc, 250 * sc], self.seed + 11)[0]
        lengthwise = fbm(along, np.zeros(1), [6000 * sc], self.seed + 13)[0]
        dens = np.clip(0.25 + 1.1 * streak * (0.6 + 0.6 * lengthwise), 0.08, 1.0)
        ok = (np.abs(across) < edge) & (np.abs(along) < self.length_half)
        return np.where(ok, dens, 0.0)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points drawn with the relative density (rejection sampling)."""
        if n <= 0:
            return np.zeros(0), np.zeros(0)
        cx, cy, r = self.circle
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        got = 0
        reach = r if self.prep == "liquid" else math.hypot(self.length_half, self.half_width * 1.3)
        while got < n:
            m = max(64, 2 * (n - got))
            rr = reach * np.sqrt(rng.random(m))
            th = rng.random(m) * 2 * np.pi
            x, y = cx + rr * np.cos(th), cy + rr * np.sin(th)
            keep = rng.random(m) < self.inside(x, y)
            xs.append(x[keep])
            ys.append(y[keep])
            got += int(keep.sum())
        return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def _draw_pieces(
    rng: np.random.Generator, cells_per_piece: np.ndarray, target: int
) -> npt.NDArray[np.int64]:
    """Piece indices (with replacement, each pass a fresh permutation) until ``target`` cells."""
    if target <= 0 or cells_per_piece.size == 0:
        return np.zeros(0, np.int64)
    out: list[np.ndarray] = []
    total = 0
    while total < target:
        perm = rng.permutation(cells_per_piece.size)
        csum = total + np.cumsum(cells_per_piece[perm])
        stop = int(np.searchsorted(csum, target)) + 1
        out.append(perm[:stop])
        total = int(csum[min(stop, csum.size) - 1])
    return np.concatenate(out).astype(np.int64)


def _abnormal_draw(
    spec: SlideSpec, kit: CellKit, rng: np.random.Generator, n_nilm: int
) -> npt.NDArray[np.int64]:
    """Abnormal units (kit piece indices) for a positive slide: one showing the worst class,
    then units no worse than it, until ``n_abnormal`` abnormal cells are shown."""
    worsts = [kit.worst(u) for u in kit.units]
    present = sorted(set(worsts), key=severity)
    if not present:
        raise ValueError(f"the cell kit ({kit.source}) has no abnormal cells for a positive slide")
    if spec.worst_bethesda is not None:
        milder = [c for c in present if severity(c) <= severity(spec.worst_bethesda)]
        worst = milder[-1] if milder else present[0]
    else:
        worst = present[int(rng.integers(len(present)))]
    n = spec.n_abnormal if spec.n_abnormal is not None else max(3, round(0.002 * n_nilm))
    n = max(1, int(n))
    first = [i for i, w in enumerate(worsts) if w == worst]
    allowed = np.array([i for i, w in enumerate(worsts) if severity(w) <= severity(worst)])
    counts = np.array([kit.units[i].n_abnormal for i in allowed])
    chosen = [int(rng.choice(first))]
    shown = kit.units[chosen[0]].n_abnormal
    if shown < n:
        # prefer units that do not overshoot what is left (exact counts for small n)
        order = rng.permutation(allowed.size)
        for k in order.tolist() * (1 + 4 * n // max(1, int(counts.sum()))):
            if shown >= n:
                break
            if counts[k] <= n - shown:
                chosen.append(int(allowed[k]))
                shown += int(counts[k])
    n_neg = len(kit.negative)
    return np.array(chosen, np.int64) + n_neg


def plan_layout(spec: SlideSpec, kit: CellKit) -> Layout:
    """Place pieces, blood and debris for ``spec``."""
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    w, h = spec.width, spec.full_height
    render_mpp = spec.mpp if spec.mpp is not None else RENDER_MPP_FALLBACK
    base = kit.mpp / render_mpp  # level-0 px per kit px, before jitter
    region = _Region(spec, rng, render_mpp)
    area_mm2 = region.area_px * (render_mpp / 1000.0) ** 2
    sprite_parts: list[np.ndarray] = []
    if spec.label != "blank":
        if not kit.negative:
            raise ValueError(f"the cell kit ({kit.source}) has no NILM pieces")
        target = spec.n_cells if spec.n_cells is not None else round(spec.density * area_mm2)
        per_piece = np.array([len(p.cells) for p in kit.negative])
        sprite_parts.append(_draw_pieces(rng, per_piece, int(target)))
        if spec.label == "positive":
            sprite_parts.append(_abnormal_draw(spec, kit, rng, int(target)))
    pieces = np.concatenate(sprite_parts) if sprite_parts else np.zeros(0, np.int64)
    # positions: most pieces drawn from the region's density, some next to another piece
    px, py = region.sample(rng, pieces.size)
    if pieces.size > 1 and spec.grouping > 0:
        grouped = np.flatnonzero(rng.random(pieces.size) < spec.grouping)
        anchor = rng.integers(0, pieces.size, grouped.size)
        reach = 60.0 / render_mpp  # within ~60 um of the anchor piece
        gx = px[anchor] + rng.normal(0, reach, grouped.size)
        gy = py[anchor] + rng.normal(0, reach, grouped.size)
        ok = region.inside(gx, gy) > 0  # a group never spills off the cell area
        px[grouped[ok]], py[grouped[ok]] = gx[ok], gy[ok]
    if spec.prep == "liquid" and pieces.size:  # whole pieces inside the circle, not just centres
        used, inv = np.unique(pieces, return_inverse=True)
        extent = np.array([max(kit.sprite_size(int(u))) for u in used], float)[inv] * base * 0.53
        px, py = _confine(px, py, region.circle, extent)
    # blood: clumps and streaks of red cells; debris: specks anywhere in the cell area
    n_blood = int(rng.poisson(spec.blood * max(1, int(pieces.size)) * 2.0)) if pieces.size else 0
    bx, by = _clumped(rng, region, n_blood, spread=40.0 / render_mpp)
    n_debris = int(rng.poisson(spec.debris_per_mm2 * area_mm2)) if spec.label != "blank" else 0
    dx, dy = region.sample(rng, n_debris)
    cx = np.concatenate([bx, dx, px])
    cy = np.concatenate([by, dy, py])
    sprite = np.concatenate(
        [
            rng.choice(kit.blood_ids, n_blood) if n_blood else np.zeros(0, np.int64),
            rng.choice(kit.debris_ids, n_debris) if n_debris else np.zeros(0, np.int64),
            pieces,
        ]
    ).astype(np.int64)
    n = sprite.size
    is_piece = sprite < kit.n_pieces
    slide_gain = spec.stain * np.asarray(spec.hue, np.float64)
    obj_gain = np.exp(rng.normal(0, 0.04, (n, 3)) + rng.normal(0, 0.07, (n, 1)))
    gain = (slide_gain * obj_gain).astype(np.float32)
    orient = rng.integers(0, 8, n).astype(np.int8)
    scale = (SIZE_JITTER[rng.integers(0, SIZE_JITTER.size, n)] * base).astype(np.float32)
    level = spec.focus_um / BLUR_STEP_UM + rng.choice(3, n, p=[0.6, 0.3, 0.1])
    blur = np.round(level).astype(np.int8)
    sizes = np.array([kit.sprite_size(int(s)) for s in np.unique(sprite)]).reshape(-1, 2)
    biggest = float(np.hypot(sizes[:, 0], sizes[:, 1]).max(initial=0.0))
    half = biggest * float(scale.max(initial=base)) / 2 + 2
    return _indexed(
        w, h, spec.prep, region.circle, region.band, area_mm2, render_mpp, cx, cy, sprite,
        orient, scale, blur, gain, is_piece, max_half=half,
    )  # fmt: skip


def _confine(
    x: np.ndarray, y: np.ndarray, circle: tuple[float, float, float], half: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pull each point in towards the circle's centre until a square of half-side ``half``
    around it lies inside the circle (to the centre when it cannot fit)."""
    cx, cy, r = circle
    dx, dy = x - cx, y - cy
    dist = np.hypot(dx, dy)
    limit = np.maximum(r - half * math.sqrt(2.0), 0.0)
    f = np.where(dist > limit, limit / np.maximum(dist, 1e-9), 1.0)
    return cx + dx * f, cy + dy * f


def _clumped(
    rng: np.random.Generator, region: _Region, n: int, spread: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points in clumps of 10-60 around points of the region."""
    if n <= 0:
        return np.zeros(0), np.zeros(0)
    n_clumps = max(1, n // 30)
    ax, ay = region.sample(rng, n_clumps)
    which = rng.integers(0, n_clumps, n)
    stretch = rng.uniform(1.0, 4.0, n_clumps)  # some clumps are streaks
    ang = rng.uniform(0, np.pi, n_clumps)
    u = rng.normal(0, spread, n) * stretch[which]
    v = rng.normal(0, spread, n)
    c, s = np.cos(ang[which]), np.sin(ang[which])
    return ax[which] + u * c - v * s, ay[which] + u * s + v * c


def _indexed(
    w: int,
    h: int,
    prep: str,
    circle: tuple[float, float, float],
    band: tuple[float, float, float],
    area_mm2: float,
    render_mpp: float,
    cx: np.ndarray,
    cy: np.ndarray,
    sprite: np.ndarray,
    orient: np.ndarray,
    scale: np.ndarray,
    blur: np.ndarray,
    gain: np.ndarray,
    is_piece: np.ndarray,
    *,
    max_half: float,
) -> Layout:
    nbx, nby = -(-w // BUCKET_PX), -(-h // BUCKET_PX)
    bx = np.clip((cx // BUCKET_PX).astype(np.int64), 0, nbx - 1)
    by = np.clip((cy // BUCKET_PX).astype(np.int64), 0, nby - 1)
    key = by * nbx + bx
    # blood and debris first within a bucket? No: draw order is kept stable by bucket only, and
    # optical densities add, so the order of objects never changes a pixel.
    order = np.argsort(key, kind="stable")
    start = np.searchsorted(key[order], np.arange(nbx * nby + 1))
    return Layout(
        width=w,
        height=h,
        prep=prep,
        circle=circle,
        band=band,
        area_mm2=area_mm2,
        render_mpp=render_mpp,
        cx=cx[order],
        cy=cy[order],
        sprite=sprite[order],
        orient=orient[order],
        scale=scale[order],
        blur=blur[order],
        gain=gain[order],
        is_piece=is_piece[order],
        bucket_start=start.astype(np.int64),
        buckets_x=nbx,
        max_half=max_half,
    )
