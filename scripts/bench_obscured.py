"""Obscured-share benchmark: the estimate against the share of cells generated under blood.

For each generated slide (negative, stain, colour and focus drawn as ``synth.patches.Conditions``
draws them, blood set per slide: red cells per labelled cell) this prints

* **truth**: the share of the cell area (pixels of the placed pieces, optical density >= 0.06,
  at 1 um/px) under at least part of a red cell (the blood layer's green density >= 0.05), and
  under a dense one (>= 0.2). Both come from rendering the slide's layout twice with only its
  pieces and only its blood (the renderer adds densities, so the layers are exact);
* **estimate**: what the tiler records (``foreground.slide_foreground(...).obscured``), with its
  blood and thick parts and the cell-bearing area it measured;
* **cost**: CPU time of the estimate against that of the mask (reading at 2 um/px, pooling
  and ``stain_mask``), both timed here on the same pooled view, median of 5.

    nice -n 10 .venv/bin/python scripts/bench_obscured.py --workdir /tmp/cyto-obscured
    nice -n 10 .venv/bin/python scripts/bench_obscured.py --workdir /tmp/cyto-obscured-normal \\
        --blood 0 0.4 --repeats 3 --seed 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cytoscreen.synth.kit import CellKit
from cytoscreen.synth.layout import Layout, SlideSpec, _indexed, plan_layout
from cytoscreen.synth.render import SlideRenderer

TRUTH_LEVEL = 2  # 1 um/px at 0.25 um/px level 0
TRUTH_LEVEL_MPP = 0.25 * 2**TRUTH_LEVEL
CELL_OD = 0.06  # a pixel of a piece with this density (max channel) is cell area
ANY_BLOOD_OD = 0.05  # green density of the blood layer: part of a red cell lies over it
DENSE_BLOOD_OD = 0.2
HEADER = (
    "| preparation | blood / cell | slides | truth, any | truth, dense | estimate | over 0.75 |"
)


class _ObjectsOnly(SlideRenderer):
    """The renderer without glass tint or preparation background: objects only."""

    def background_od(self, xs: np.ndarray, ys: np.ndarray, pixel: float) -> np.ndarray:
        return np.zeros((ys.size, xs.size, 3), np.float32)


def _subset(lay: Layout, keep: npt.NDArray[np.bool_]) -> Layout:
    return _indexed(
        lay.width, lay.height, lay.prep, lay.circle, lay.band, lay.area_mm2, lay.render_mpp,
        lay.cx[keep], lay.cy[keep], lay.sprite[keep], lay.orient[keep], lay.scale[keep],
        lay.blur[keep], lay.gain[keep], lay.is_piece[keep], max_half=lay.max_half,
    )  # fmt: skip


def _layer_od(spec: SlideSpec, lay: Layout, kit: CellKit, keep: npt.NDArray[np.bool_]) -> Any:
    renderer = _ObjectsOnly(_subset(lay, keep), kit, seed=spec.seed, stain=spec.stain)
    d = 2**TRUTH_LEVEL
    w, h = -(-lay.width // d), -(-lay.height // d)
    rgb = renderer.render(TRUTH_LEVEL, 0, 0, w, h).astype(np.float32)
    glass = renderer.glass.astype(np.float32)
    return np.clip(-np.log10(np.maximum(rgb, 1.0) / glass), 0.0, None)


def truth(spec: SlideSpec, kit: CellKit) -> dict[str, float]:
    """Shares of the generated cell area under any and under dense blood."""
    lay = plan_layout(spec, kit)
    cells = _layer_od(spec, lay, kit, lay.is_piece).max(axis=2) >= CELL_OD
    blood = _layer_od(spec, lay, kit, np.isin(lay.sprite, kit.blood_ids))[..., 1]
    n = max(1, int(cells.sum()))
    return {
        "under_any": float((cells & (blood >= ANY_BLOOD_OD)).sum() / n),
        "under_dense": float((cells & (blood >= DENSE_BLOOD_OD)).sum() / n),
        "cell_mm2": n * (TRUTH_LEVEL_MPP / 1000.0) ** 2,
    }


def estimate(path: Path) -> dict[str, Any]:
    """The tiler's estimate, and the CPU time of the mask and of the estimate."""
    from cytoscreen.config import load_config
    from cytoscreen.io import open_slide
    from cytoscreen.tiling import foreground as fgm

    cfg = load_config().foreground
    factor = max(1, round(cfg.thumbnail_mpp / min(cfg.sample_mpp, cfg.thumbnail_mpp)))
    mask_cpu, est_cpu = [], []
    with open_slide(path) as reader:
        for _ in range(5):
            t0 = time.thread_time()
            mean, dark = fgm.read_pooled(reader, cfg.thumbnail_mpp / factor, factor)
            mask = fgm.stain_mask(mean, cfg.thumbnail_mpp, cfg, dark)
            t1 = time.thread_time()
            e = fgm.obscured_estimate(mean, mask, cfg.thumbnail_mpp)
            t2 = time.thread_time()
            mask_cpu.append(t1 - t0)
            est_cpu.append(t2 - t1)
        recorded = fgm.slide_foreground(reader, cfg).obscured
    assert recorded == e  # the estimate timed is the one the tiler records
    return {
        "share": e.share, "blood_part": e.blood, "thick_part": e.thick, "est_mm2": e.cell_mm2,
        "mask_ms": 1000 * statistics.median(mask_cpu), "est_ms": 1000 * statistics.median(est_cpu),
    }  # fmt: skip


def report(rows: list[dict[str, Any]], bloods: list[float], cells: int) -> None:
    print("\nper preparation and blood level (median over slides):")
    print(HEADER)
    print("|---|---|---|---|---|---|---|")
    for prep in ("liquid", "conventional"):
        for blood in bloods:
            g = [r for r in rows if r["prep"] == prep and r["blood"] == blood]
            med = {
                key: statistics.median(r[key] for r in g)
                for key in ("under_any", "under_dense", "share")
            }
            over = sum(r["share"] > 0.75 for r in g)
            print(f"| {prep} | {blood:g} | {len(g)} | {med['under_any']:.2f} | "
                  f"{med['under_dense']:.2f} | {med['share']:.3f} | {over} |")  # fmt: skip
    cost = [r["est_ms"] / r["mask_ms"] for r in rows]
    mask_ms = statistics.median(r["mask_ms"] for r in rows)
    print(
        f"\ncost of the estimate: median {statistics.median(cost):.1%} of the mask's CPU time "
        f"(range {min(cost):.1%}-{max(cost):.1%}; mask {mask_ms:.0f} ms median on slides of "
        f"{cells} cells)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cyto-obscured"))
    ap.add_argument("--split", default="test", help="fields of this split (or 'all')")
    ap.add_argument("--cells", type=int, default=1500, help="labelled cells per slide")
    ap.add_argument("--blood", type=float, nargs="+", default=[0.2, 10.0, 20.0, 40.0, 100.0])
    ap.add_argument("--repeats", type=int, default=2, help="slides per preparation and blood")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    from cytoscreen.synth.cric import load_image_splits
    from cytoscreen.synth.kit import load_cell_kit
    from cytoscreen.synth.patches import Conditions, draw_spec
    from cytoscreen.synth.slide import generate_slide

    work = args.workdir
    (work / "slides").mkdir(parents=True, exist_ok=True)
    kit = load_cell_kit()
    if args.split != "all":
        repo = Path(__file__).resolve().parents[1]
        splits = load_image_splits(repo / "data_manifests" / "cric_splits.json")
        kit = kit.subset(splits.images[args.split])
    print(f"kit: {kit.source}: {len(kit.fields)} fields, {kit.n_pieces} pieces")
    rng = np.random.default_rng(args.seed)
    rows = []
    k = 0
    for blood in args.blood:
        for prep in ("liquid", "conventional"):
            for _ in range(args.repeats):
                spec = draw_spec(
                    rng, label="negative", n_cells=args.cells, prep=prep,
                    seed=args.seed * 1000 + k, conditions=Conditions(blood=(blood, blood)),
                )  # fmt: skip
                k += 1
                name = f"{k:02d}-{prep[:4]}-d{spec.density:.0f}-blood{blood:g}"
                path = work / "slides" / f"{args.split}-{name}.tiff"
                stamp = path.with_suffix(".spec.json")
                if not (path.is_file() and stamp.is_file() and stamp.read_text() == repr(spec)):
                    generate_slide(path, spec, kit)
                    stamp.write_text(repr(spec))
                row = {"name": name, "prep": prep, "blood": blood, **truth(spec, kit),
                       **estimate(path)}  # fmt: skip
                rows.append(row)
                print(f"  {name:<30} truth {row['under_any']:.2f} (dense {row['under_dense']:.2f}) "
                      f"estimate {row['share']:.3f} (blood {row['blood_part']:.3f}, thick "
                      f"{row['thick_part']:.3f}; cells {row['cell_mm2']:.2f} -> "
                      f"{row['est_mm2']:.2f} mm^2) mask {row['mask_ms']:.1f} ms, estimate "
                      f"{row['est_ms']:.2f} ms", flush=True)  # fmt: skip
    report(rows, args.blood, args.cells)
    (work / f"results-{args.split}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
