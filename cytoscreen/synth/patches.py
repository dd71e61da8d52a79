"""Patches at a model's resolution, cut from virtual slides: training and evaluation examples.

A *virtual slide* is a planned layout (``plan_layout``) rendered on demand, never written: a
patch of it is made by exactly the renderer that writes slides, so a training patch and a patch
of a screened slide are the same kind of picture (the screened one has also been through JPEG,
which training adds as an augmentation).

- ``VirtualSlides``: a set of layouts of one split's fields (liquid-based and conventional,
  negative and positive, stain/colour/focus spread), with the level-0 positions of every
  labelled cell. ``positive_window`` puts an abnormal nucleus inside a patch;
  ``negative_window`` draws a patch of a negative slide (hard negatives among thousands of
  NILM cells, overlaps, blood, debris), whose pieces keep ``fields.NEGATIVE_CLEARANCE`` from
  every labelled abnormal nucleus.
- ``cell_patches``: one patch per labelled cell, showing the cell inside its own piece (its real
  neighbours) on glass: the cell-level test set. NILM cells are shown by their negative piece
  (so no abnormal nucleus is in view); NILM cells that lie in no negative piece are skipped
  and counted.

A patch is positive when an abnormal nucleus lies at least ``EDGE_UM`` inside it; a window
with an abnormal nucleus nearer its border than that (or just outside it) is ambiguous and
never drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from cytoscreen.synth.kit import CellKit
from cytoscreen.synth.layout import PREPS, Layout, SlideSpec, plan_layout, size_for
from cytoscreen.synth.render import SlideRenderer, SpriteCache
from cytoscreen.synth.slide import SlideTruth, layout_truth

EDGE_UM = 6.0  # an abnormal nucleus this far inside a patch makes it positive
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Conditions:
    """Ranges a slide set draws its per-slide stain, colour, focus and density from."""

    stain: tuple[float, float] = (0.85, 1.15)  # OD multiplier
    hue_sd: float = 0.06  # per-channel log-gain sd
    focus_um: tuple[float, float] = (0.0, 0.5)
    blood: tuple[float, float] = (0.0, 0.4)  # red cells per labelled cell
    density: dict[str, tuple[float, float]] | None = None  # per preparation, cells per mm^2
    quality: tuple[int, int] = (70, 95)

    def densities(self, prep: str) -> tuple[float, float]:
        d = self.density or {"liquid": (300.0, 900.0), "conventional": (1000.0, 2000.0)}
        return d[prep]


def draw_spec(
    rng: np.random.Generator,
    *,
    label: str,
    n_cells: int,
    n_abnormal: int | None = None,
    prep: str | None = None,
    mpp: float = 0.25,
    seed: int = 0,
    conditions: Conditions = Conditions(),
    worst_bethesda: str | None = None,
) -> SlideSpec:
    """A slide spec with its conditions drawn from ``conditions`` (recorded in its truth)."""
    prep = prep or str(rng.choice(PREPS))
    lo, hi = conditions.densities(prep)
    density = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    hue = np.exp(rng.normal(0, conditions.hue_sd, 3))
    return SlideSpec(
        size=size_for(n_cells, density, prep, mpp),  # type: ignore[arg-type]
        label=label,  # type: ignore[arg-type]
        seed=seed,
        mpp=mpp,
        prep=prep,  # type: ignore[arg-type]
        density=density,
        n_cells=n_cells,
        n_abnormal=n_abnormal if label == "positive" else None,
        worst_bethesda=worst_bethesda,
        stain=float(rng.uniform(*conditions.stain)),
        hue=(float(hue[0]), float(hue[1]), float(hue[2])),
        focus_um=float(rng.uniform(*conditions.focus_um)),
        blood=float(rng.uniform(*conditions.blood)),
        quality=int(rng.integers(conditions.quality[0], conditions.quality[1] + 1)),
    )


@dataclass
class VirtualSlide:
    spec: SlideSpec
    layout: Layout
    truth: SlideTruth
    renderer: SlideRenderer
    abnormal_xy: npt.NDArray[np.float64]  # (M, 2) level-0 nucleus points
    cell_xy: npt.NDArray[np.float64]  # (K, 2) every labelled nucleus


class VirtualSlides:
    """Virtual slides of one kit (one split), rendered at ``mpp`` in ``patch_px`` windows."""

    def __init__(
        self,
        kit: CellKit,
        *,
        n_negative: int,
        n_positive: int,
        mpp: float,
        patch_px: int,
        n_cells: int = 1500,
        n_abnormal: tuple[int, int] = (20, 80),
        seed: int = 0,
        conditions: Conditions = Conditions(),
        cache_mb: float = 512.0,
        positive_edge_um: float = EDGE_UM,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.kit = kit
        # how far inside a positive window its abnormal nucleus lies at least (EDGE_UM: the
        # label's own margin; less trains on nuclei the patch grid cuts, docs/model.md)
        self.positive_edge_um = positive_edge_um
        self.mpp = mpp
        self.patch_px = patch_px
        self.slides: list[VirtualSlide] = []
        base_mpp = kit.mpp
        self.level = 0 if abs(mpp - base_mpp) < 1e-6 else int(round(np.log2(mpp / base_mpp)))
        if abs(base_mpp * 2**self.level - mpp) > 1e-6 * mpp:
            raise ValueError(f"mpp {mpp} is not the kit's {base_mpp} um/px times a power of 2")
        cache = SpriteCache(cache_mb)  # one cache for every slide: they share the kit's sprites
        labels = ["negative"] * n_negative + ["positive"] * n_positive
        for k, label in enumerate(labels):
            n_ab = int(rng.integers(n_abnormal[0], n_abnormal[1] + 1))
            spec = draw_spec(
                rng, label=label, n_cells=n_cells, n_abnormal=n_ab, mpp=base_mpp,
                seed=seed * 1000 + k, conditions=conditions,
            )  # fmt: skip
            layout = plan_layout(spec, kit)
            truth = layout_truth(layout, kit, spec, f"virtual-{seed}-{k}")
            renderer = SlideRenderer(layout, kit, seed=spec.seed, stain=spec.stain, cache=cache)
            xy = np.array([(c.x, c.y) for c in truth.cells], float).reshape(-1, 2)
            ab = np.array([(c.x, c.y) for c in truth.cells if c.abnormal], float).reshape(-1, 2)
            self.slides.append(VirtualSlide(spec, layout, truth, renderer, ab, xy))
        self.negative = [i for i, s in enumerate(self.slides) if s.abnormal_xy.size == 0]
        self.positive = [i for i, s in enumerate(self.slides) if s.abnormal_xy.size]

    @property
    def size_l0(self) -> float:
        return self.patch_px * 2.0**self.level

    def render(self, slide: int, x0: float, y0: float) -> U8:
        """The patch whose level-0 top-left corner is (x0, y0)."""
        d = 2.0**self.level
        s = self.slides[slide]
        return s.renderer.render(
            self.level, int(round(x0 / d)), int(round(y0 / d)), self.patch_px, self.patch_px
        )

    def label_of(self, slide: int, x0: float, y0: float) -> int:
        """1 (abnormal nucleus well inside), 0 (none near), -1 (ambiguous: near the border)."""
        ab = self.slides[slide].abnormal_xy
        if ab.size == 0:
            return 0
        size = self.size_l0
        edge = EDGE_UM / self.kit.mpp
        rx, ry = ab[:, 0] - x0, ab[:, 1] - y0
        inner = (rx >= edge) & (rx < size - edge) & (ry >= edge) & (ry < size - edge)
        if inner.any():
            return 1
        near = (rx >= -edge) & (rx < size + edge) & (ry >= -edge) & (ry < size + edge)
        return -1 if near.any() else 0

    def positive_window(self, rng: np.random.Generator) -> tuple[int, float, float]:
        """(slide, x0, y0) of a patch holding an abnormal nucleus at a random position."""
        s = int(rng.choice(self.positive))
        ab = self.slides[s].abnormal_xy
        x, y = ab[int(rng.integers(ab.shape[0]))]
        size, edge = self.size_l0, self.positive_edge_um / self.kit.mpp
        ox, oy = rng.uniform(edge, size - edge, 2)
        return s, float(x - ox), float(y - oy)

    def negative_window(
        self, rng: np.random.Generator, tries: int = 20
    ) -> tuple[int, float, float] | None:
        """(slide, x0, y0) of a NILM patch: around a random labelled NILM cell (so most
        patches hold cells) of a random *negative* slide. Never from a positive slide: the
        neighbours of its abnormal cells come from the abnormal cells' own fields, where
        unlabelled cells near a labelled abnormal one are often abnormal too (the label noise
        ``NEGATIVE_CLEARANCE`` keeps off negative pieces). None without a negative slide."""
        size = self.size_l0
        if not self.negative:
            return None
        for _ in range(tries):
            s = int(rng.choice(self.negative))
            xy = self.slides[s].cell_xy
            if xy.size == 0:
                continue
            x, y = xy[int(rng.integers(xy.shape[0]))]
            ox, oy = rng.uniform(0, size, 2)
            x0, y0 = float(x - ox), float(y - oy)
            if self.label_of(s, x0, y0) == 0:
                return s, x0, y0
        return None


@dataclass(frozen=True)
class CellPatches:
    """One patch per labelled cell (see ``cell_patches``)."""

    images: U8  # (N, P, P, 3)
    labels: npt.NDArray[np.int64]  # 1 abnormal, 0 NILM
    bethesda: tuple[str, ...]
    cell_ids: npt.NDArray[np.int64]
    image_ids: npt.NDArray[np.int64]
    skipped_nilm: int  # NILM cells in no negative piece (an abnormal nucleus in view)


def cell_patches(
    kit: CellKit,
    *,
    mpp: float,
    patch_px: int,
    seed: int = 0,
    limit: int | None = None,
) -> CellPatches:
    """Each labelled cell of ``kit`` inside its own piece, on glass, at a seeded random offset
    (the nucleus at least ``EDGE_UM`` inside the patch): NILM cells from their negative piece,
    abnormal cells from their abnormal unit."""
    rng = np.random.default_rng(seed)
    base = kit.mpp
    level = int(round(np.log2(mpp / base)))
    d = 2.0**level
    size_l0 = patch_px * d
    edge = EDGE_UM / base
    # which piece shows each cell: negative pieces for NILM cells, units for abnormal ones
    jobs: list[tuple[int, int]] = []  # (piece index, crop index)
    seen: set[tuple[int, int]] = set()
    for pi, p in enumerate(kit.negative):
        for c in p.cells:
            if (p.image_id, c) not in seen:
                seen.add((p.image_id, c))
                jobs.append((pi, c))
    n_neg = len(kit.negative)
    for ui, u in enumerate(kit.units):
        fld = kit.fields[u.image_id]
        for c in u.cells:
            if fld.crops[c].abnormal and (u.image_id, c) not in seen:
                seen.add((u.image_id, c))
                jobs.append((n_neg + ui, c))
    all_nilm = {
        (f.image_id, i)
        for f in kit.fields.values()
        for i, c in enumerate(f.crops)
        if not c.abnormal
    }
    skipped = len(all_nilm - seen)
    if limit is not None and len(jobs) > limit:
        jobs = [jobs[int(i)] for i in np.sort(rng.choice(len(jobs), limit, replace=False))]
    images, labels, classes, cids, iids = [], [], [], [], []
    spec = SlideSpec(size=int(size_l0 * 3), label="negative", seed=seed)
    cache = SpriteCache(128.0)
    for pi, c in jobs:
        piece = kit.pieces[pi]
        fld = kit.fields[piece.image_id]
        layout = _single(kit, pi, spec, rng)
        truth = layout_truth(layout, kit, replace(spec, seed=seed), "cell")
        crop = fld.crops[c]
        # the cell's own nucleus on the slide: the truth entry with its id nearest the centre
        mine = [t for t in truth.cells if t.cric_cell_id == crop.cell_id]
        x, y = mine[0].x, mine[0].y
        ox, oy = rng.uniform(edge, size_l0 - edge, 2)
        renderer = SlideRenderer(layout, kit, seed=int(rng.integers(2**31)), cache=cache)
        img = renderer.render(
            level, int(round((x - ox) / d)), int(round((y - oy) / d)), patch_px, patch_px
        )
        images.append(img)
        labels.append(int(crop.abnormal))
        classes.append(crop.bethesda)
        cids.append(crop.cell_id)
        iids.append(crop.image_id)
    return CellPatches(
        images=np.stack(images) if images else np.zeros((0, patch_px, patch_px, 3), np.uint8),
        labels=np.array(labels, np.int64),
        bethesda=tuple(classes),
        cell_ids=np.array(cids, np.int64),
        image_ids=np.array(iids, np.int64),
        skipped_nilm=skipped,
    )


def _single(kit: CellKit, piece: int, spec: SlideSpec, rng: np.random.Generator) -> Layout:
    """A layout holding one piece at the centre of ``spec``'s slide, random orientation."""
    from cytoscreen.synth.layout import _indexed

    w = h = spec.size
    sw, sh = kit.sprite_size(piece)
    scale = np.array([kit.mpp / (spec.mpp or kit.mpp)], np.float32)
    return _indexed(
        w, h, "liquid", (w / 2, h / 2, w), (0.0, 0.0, 0.0), 0.0, spec.mpp or kit.mpp,
        np.array([w / 2.0]), np.array([h / 2.0]), np.array([piece], np.int64),
        np.array([int(rng.integers(8))], np.int8), scale, np.array([0], np.int8),
        np.ones((1, 3), np.float32), np.array([True]), max_half=float(np.hypot(sw, sh)) / 2 + 2,
    )  # fmt: skip
