"""``generate_slide``: a liquid-based or conventional Pap slide from real fields, with ground truth.

Writes ``<name>.tiff`` (pyramidal tiled JPEG, openslide/tiffslide readable, mpp in the
resolution tags), ``<name>.cells.json`` (every placed cell) and ``<name>.geojson`` (the same
cells as QuPath-importable annotations).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from cytoscreen.synth.kit import CellKit, severity
from cytoscreen.synth.layout import Layout, SlideSpec, orient_points, oriented_size, plan_layout
from cytoscreen.synth.render import SlideRenderer
from cytoscreen.synth.tiffwriter import write_pyramidal_tiff

SEP = (",", ":")  # compact JSON
# QuPath-style display colours per Bethesda class
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "NILM": (60, 160, 60),
    "ASC-US": (240, 200, 0),
    "LSIL": (250, 140, 0),
    "ASC-H": (230, 90, 30),
    "HSIL": (210, 30, 30),
    "SCC": (140, 0, 90),
}


@dataclass(frozen=True)
class CellTruth:
    x: float  # level-0 centre (nucleus of the source crop)
    y: float
    bbox: tuple[int, int, int, int]  # level-0 x0, y0, x1, y1 (exclusive)
    bethesda: str
    abnormal: bool
    cric_cell_id: int


@dataclass(frozen=True)
class SlideTruth:
    """Ground truth of one generated slide."""

    slide: str  # file name of the slide
    width: int
    height: int
    mpp: float | None
    label: str  # negative | positive | blank
    worst_bethesda: str | None  # None for a blank slide; NILM for a negative one
    seed: int
    circle: tuple[float, float, float]
    cells: tuple[CellTruth, ...]
    prep: str = "liquid"
    area_mm2: float = 0.0  # cell-bearing area (circle or smear band)
    conditions: dict[str, Any] = field(default_factory=dict)  # stain, hue, focus, blood, quality

    @property
    def n_abnormal(self) -> int:
        return sum(c.abnormal for c in self.cells)

    def summary(self) -> dict[str, Any]:
        """Every field but the cells, plus the cell counts."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cells"}
        d["circle"] = list(self.circle)
        d["n_cells"] = len(self.cells)
        d["n_abnormal"] = self.n_abnormal
        return d

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "cells": [asdict(c) for c in self.cells]}


def slide_label(cells: tuple[CellTruth, ...]) -> tuple[str, str | None]:
    """The labelling rule: blank (no cells), positive (>= 1 abnormal) or negative."""
    if not cells:
        return "blank", None
    worst = max((c.bethesda for c in cells), key=severity)
    return ("positive" if worst != "NILM" else "negative"), worst


def spec_conditions(spec: SlideSpec) -> dict[str, Any]:
    """The generation settings a slide set reports results by (strata)."""
    return {
        "stain": round(spec.stain, 4),
        "hue": [round(h, 4) for h in spec.hue],
        "focus_um": round(spec.focus_um, 3),
        "blood": round(spec.blood, 4),
        "quality": spec.quality,
        "density": spec.density,
    }


def layout_truth(layout: Layout, kit: CellKit, spec: SlideSpec, name: str) -> SlideTruth:
    """Ground truth from a layout: every labelled cell of every placed piece, at the level-0
    position the renderer draws it (nucleus point; bbox = its crop window)."""
    cells = []
    for i in np.flatnonzero(layout.is_piece):
        piece = kit.pieces[int(layout.sprite[i])]
        fld = kit.fields[piece.image_id]
        pw, ph = piece.size
        o = int(layout.orient[i])
        ow, oh = oriented_size(pw, ph, o)
        sc = float(layout.scale[i])
        nw, nh = max(1, round(ow * sc)), max(1, round(oh * sc))
        left = float(np.floor(layout.cx[i] - nw / 2 + 0.5))
        top = float(np.floor(layout.cy[i] - nh / 2 + 0.5))
        fx, fy = nw / ow, nh / oh
        bx0, by0 = piece.bbox[:2]
        for c in piece.cells:
            crop = fld.crops[c]
            nx, ny = fld.nucleus(c)
            wx0, wy0, wx1, wy1 = fld.window(c)
            xs = np.array([nx + 0.5, wx0, wx1, wx0, wx1], float) - bx0
            ys = np.array([ny + 0.5, wy0, wy0, wy1, wy1], float) - by0
            ox, oy = orient_points(xs, ys, pw, ph, o)
            X, Y = left + ox * fx, top + oy * fy
            cells.append(
                CellTruth(
                    x=round(float(X[0]), 1),
                    y=round(float(Y[0]), 1),
                    bbox=(
                        int(np.floor(X[1:].min())),
                        int(np.floor(Y[1:].min())),
                        int(np.ceil(X[1:].max())),
                        int(np.ceil(Y[1:].max())),
                    ),
                    bethesda=crop.bethesda,
                    abnormal=crop.abnormal,
                    cric_cell_id=crop.cell_id,
                )
            )
    cells.sort(key=lambda c: (-severity(c.bethesda), c.y, c.x))
    label, worst = slide_label(tuple(cells))
    return SlideTruth(
        slide=name,
        width=layout.width,
        height=layout.height,
        mpp=spec.mpp,
        label=label,
        worst_bethesda=worst,
        seed=spec.seed,
        circle=layout.circle,
        cells=tuple(cells),
        prep=layout.prep,
        area_mm2=round(layout.area_mm2, 4),
        conditions=spec_conditions(spec),
    )


def _feature(c: CellTruth) -> dict[str, Any]:
    x0, y0, x1, y1 = c.bbox
    return {
        "type": "Feature",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
        },
        "properties": {
            "objectType": "annotation",
            "classification": {"name": c.bethesda, "color": list(CLASS_COLORS[c.bethesda])},
            "isLocked": False,
            "cric_cell_id": c.cric_cell_id,
            "abnormal": c.abnormal,
            "centre": [c.x, c.y],
        },
    }


def truth_geojson(truth: SlideTruth) -> dict[str, Any]:
    """QuPath-importable FeatureCollection: one rectangle annotation per cell."""
    return {"type": "FeatureCollection", "features": [_feature(c) for c in truth.cells]}


def write_truth(truth: SlideTruth, json_path: Path, geo_path: Path) -> None:
    """Stream ``.cells.json`` and ``.geojson`` cell by cell (a full slide has ~10^6 cells)."""
    head = truth.summary()
    with json_path.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(head, separators=SEP)[:-1] + ',"cells":[')
        for k, c in enumerate(truth.cells):
            fh.write(("," if k else "") + json.dumps(asdict(c), separators=SEP))
        fh.write("]}")
    with geo_path.open("w", encoding="utf-8") as fh:
        fh.write('{"type":"FeatureCollection","features":[')
        for k, c in enumerate(truth.cells):
            fh.write(("," if k else "") + json.dumps(_feature(c), separators=SEP))
        fh.write("]}")


def nucleus_patches(
    truth: SlideTruth, xy: npt.NDArray[np.float64], side: float
) -> npt.NDArray[np.int64]:
    """Per labelled cell of ``truth``, the index of the patch (top-left corners ``xy`` in level-0
    px, squares of ``side``) holding its nucleus; -1 where none does."""
    out = np.full(len(truth.cells), -1, np.int64)
    centres = np.array([(c.x, c.y) for c in truth.cells], float).reshape(-1, 2)
    for lo in range(0, len(centres), 500):  # (500 x patches) booleans at a time
        c = centres[lo : lo + 500, None, :]
        inside = ((xy[None] <= c) & (c < xy[None] + side)).all(axis=2)
        found = np.any(inside, axis=1)
        out[lo : lo + 500][found] = inside.argmax(axis=1)[found]
    return out


def truth_paths(slide_path: str | Path) -> tuple[Path, Path]:
    """``<slide>.cells.json`` and ``<slide>.geojson`` beside a slide (suffix replaced)."""
    p = Path(slide_path)
    stem = p.with_suffix("")
    return stem.with_name(stem.name + ".cells.json"), stem.with_name(stem.name + ".geojson")


def greyscale(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """An RGB region as a monochrome scan would record it (luminance in all three channels)."""
    lum = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    grey = np.clip(np.rint(lum), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def generate_slide(
    out_path: str | Path,
    spec: SlideSpec,
    kit: CellKit,
    *,
    cache_mb: float = 384.0,
    reduce_mb: float = 768.0,
    transform: Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.uint8]] | None = None,
) -> SlideTruth:
    """Write one synthetic slide and its ground truth; returns the truth.

    Level 0 is rendered region by region; the coarser levels are reduced from an in-memory
    level 1 when it fits in ``reduce_mb``, else rendered region by region too, so memory stays
    bounded at any size (a 20 mm preparation at 0.25 um/px is 80,000 x 80,000 px).
    ``transform`` (e.g. ``greyscale``) is applied to every rendered region: slides unlike the
    training domain.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    layout = plan_layout(spec, kit)
    truth = layout_truth(layout, kit, spec, out_path.name)
    renderer = SlideRenderer(layout, kit, seed=spec.seed, cache_mb=cache_mb, stain=spec.stain)
    prep = "liquid-based" if spec.prep == "liquid" else "conventional"
    desc = (
        f"cytoscreen synthetic {prep} Pap slide; label={truth.label}; "
        f"worst={truth.worst_bethesda}; seed={spec.seed}; cells from CRIC (Rezende et al. 2021)"
    )
    with threadpool_limits(1):  # tiny matrix products: BLAS threads only add overhead
        write_pyramidal_tiff(
            out_path,
            layout.width,
            layout.height,
            renderer.render if transform is None else _transformed(renderer.render, transform),
            mpp=spec.mpp,
            tile=spec.tile,
            quality=spec.quality,
            description=desc,
            reduce_mb=reduce_mb,
        )
    json_path, geo_path = truth_paths(out_path)
    write_truth(truth, json_path, geo_path)
    return truth


def _transformed(
    render: Callable[[int, int, int, int, int], npt.NDArray[np.uint8]],
    transform: Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.uint8]],
) -> Callable[[int, int, int, int, int], npt.NDArray[np.uint8]]:
    def out(level: int, x: int, y: int, w: int, h: int) -> npt.NDArray[np.uint8]:
        return transform(np.asarray(render(level, x, y, w, h), dtype=np.uint8))

    return out


def load_truth(path: str | Path) -> SlideTruth:
    """Read a ``.cells.json`` written by ``generate_slide``."""
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = tuple(
        CellTruth(
            x=c["x"],
            y=c["y"],
            bbox=tuple(c["bbox"]),
            bethesda=c["bethesda"],
            abnormal=c["abnormal"],
            cric_cell_id=c["cric_cell_id"],
        )
        for c in d["cells"]
    )
    return SlideTruth(
        slide=d["slide"],
        width=d["width"],
        height=d["height"],
        mpp=d["mpp"],
        label=d["label"],
        worst_bethesda=d["worst_bethesda"],
        seed=d["seed"],
        circle=tuple(d["circle"]),
        cells=cells,
        prep=d.get("prep", "liquid"),
        area_mm2=float(d.get("area_mm2", 0.0)),
        conditions=dict(d.get("conditions", {})),
    )
