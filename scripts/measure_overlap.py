"""What an overlapping patch grid would give: half-shifted windows assembled from the cache.

    .venv/bin/python scripts/measure_overlap.py work/cal2/results --work work/overlap \
        --positives 100

The screening grid has no overlap, so an abnormal nucleus near a patch edge is seen cut in two
(scripts/measure_cell_position.py). A grid with a stride of half a patch is the same grid plus
three grids shifted by half a patch right, down, and both; every window of those is made of
four quarters of cached neighbours, so it is assembled from the patch cache without reading
the slide again. Each shifted window is scored with the model that scored the results and the
scores are kept under ``--work`` (one ``<slide id>.npz`` per slide: for each shift, the scores
and the index of the grid patch at the window's top-left), so a rerun only analyses.

Slides: every adequate negative, the positives with one abnormal cell, and ``--positives``
others drawn at random. Printed: abnormal cells at >= 0.5 / 0.9 on the grid against the best
window holding their nucleus on the half-stride grid, and the slide AUC of top-k rules on
both (each positive's patches joined to a random adequate negative's, as in the calibration).
Figures describe generated slides of the fields the results were made from.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cytoscreen.qa.generated import scored_slides
from cytoscreen.scoring.scorer import Scorer
from cytoscreen.slide.aggregate import aggregate
from cytoscreen.slide.settings import AggregationSettings
from cytoscreen.synth.slide import SlideTruth
from cytoscreen.tiling.store import PatchStore
from cytoscreen.training.metrics import auc_with_ci
from cytoscreen.types import scoring_kind

REPO = Path(__file__).resolve().parents[1]
SHIFTS = {"x": (1, 0), "y": (0, 1), "xy": (1, 1)}  # in half patches
F64 = npt.NDArray[np.float64]


def shifted_scores(store: PatchStore, scorer: Scorer) -> dict[str, npt.NDArray[np.generic]]:
    """Scores of the half-shifted windows whose four quarters are all cached patches."""
    images = np.asarray(store.images[:], dtype=np.uint8)
    side = float(store.attrs.size_l0)
    px = images.shape[1]
    half = px // 2
    cells = np.round(np.asarray(store.coords, float) / side).astype(int)
    index = {(int(a), int(b)): i for i, (a, b) in enumerate(cells)}
    out: dict[str, npt.NDArray[np.generic]] = {}
    for name, (ox, oy) in SHIFTS.items():
        windows, where = [], []
        for i, (a, b) in enumerate(cells.tolist()):
            need = [(a + dx, b + dy) for dx in range(ox + 1) for dy in range(oy + 1)]
            if not all(n in index for n in need):
                continue
            canvas = np.empty((px * (oy + 1), px * (ox + 1), 3), np.uint8)
            for na, nb in need:
                y0, x0 = (nb - b) * px, (na - a) * px
                canvas[y0 : y0 + px, x0 : x0 + px] = images[index[(na, nb)]]
            windows.append(canvas[half * oy : half * oy + px, half * ox : half * ox + px])
            where.append(i)
        probs = scorer.predict(np.stack(windows))[:, 1] if windows else np.zeros(0, np.float32)
        out[name], out[name + "_i"] = probs, np.array(where, int)
    return out


def auc_text(pos: F64, neg: F64) -> str:
    """AUC with its bootstrap 95% interval and count."""
    y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    return auc_with_ci(y, np.r_[pos, neg], n_boot=2000).text(brackets=True)


def top_k(p: F64, k: int) -> float:
    score = aggregate(p, AggregationSettings(rule="top_k_mean", top_k=k))
    assert score is not None  # every slide here has scored patches
    return score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--positives", type=int, default=100, help="positives beyond the 1-cell ones")
    ap.add_argument("--model", type=Path, default=REPO / "cytoscreen" / "models" / "default")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    slides = list(scored_slides(args.results))
    if not slides:
        raise SystemExit(f"{args.results}: no scored generated slide")
    # the shifted windows are scored as the run scored the grid (runtime and precision)
    how = slides[0].result.scoring
    if how is None:
        raise SystemExit(f"{slides[0].result.id}: its result does not say how it was scored")
    scorer = Scorer.load(args.model, precision=how["precision"], runtime=how["runtime"])
    slides = [
        s
        for s in slides
        if s.result.model_id == scorer.card.model_id
        and scoring_kind(s.result.scoring) == scoring_kind(how)
    ]
    rng = np.random.default_rng(args.seed)
    negatives = [s for s in slides if s.adequate_negative]
    positives = [s for s in slides if s.truth.label == "positive"]
    single = [s for s in positives if sum(c.abnormal for c in s.truth.cells) == 1]
    ones = {s.result.id for s in single}
    others = [s for s in positives if s.result.id not in ones]
    pick = rng.choice(len(others), min(args.positives, len(others)), replace=False)
    chosen = single + [others[i] for i in sorted(pick)]
    args.work.mkdir(parents=True, exist_ok=True)

    grid: dict[str, F64] = {}
    both: dict[str, F64] = {}
    cell_grid, cell_best = [], []
    for s in chosen + negatives:
        sid, store, truth, p = s.result.id, s.store, s.truth, s.p
        saved = args.work / f"{sid}.npz"
        if not saved.exists():
            arrays: dict[str, Any] = dict(shifted_scores(store, scorer))
            np.savez(saved, **arrays)
            print(f"{sid}: {len(store.coords)} patches scored on the shifted grids", flush=True)
        z = np.load(saved)
        xy = np.asarray(store.coords, float)
        side = float(store.attrs.size_l0)
        layers = [(xy, p)] + [
            (xy[z[n + "_i"]] + np.array(d) * side / 2, np.asarray(z[n], float))
            for n, d in SHIFTS.items()
        ]
        grid[sid] = p[~np.isnan(p)]
        allp = np.concatenate([q for _, q in layers])
        both[sid] = allp[~np.isnan(allp)]
        cell_grid_, cell_best_ = cell_scores(truth, layers, side)
        cell_grid += cell_grid_
        cell_best += cell_best_
    g, b = np.array(cell_grid), np.array(cell_best)
    print(
        f"\n{len(chosen)} positives ({len(single)} with one abnormal cell), {len(negatives)} "
        f"adequate negatives; {g.size} abnormal cells in the tiled area"
    )
    print(f"{'':<22}{'>= 0.5':>8}{'>= 0.9':>8}")
    print(f"{'grid (stride 1)':<22}{np.mean(g >= 0.5):>8.3f}{np.mean(g >= 0.9):>8.3f}")
    print(f"{'half stride, best':<22}{np.mean(b >= 0.5):>8.3f}{np.mean(b >= 0.9):>8.3f}")
    one = np.array([x in single for x in chosen])
    join = rng.integers(len(negatives), size=len(chosen))
    print(f"\n{'grid':<12}{'rule':<8}{'AUC':>30}{'1-cell AUC':>30}{'spec @ 1% quantile':>20}")
    for name, table in (("stride 1", grid), ("half", both)):
        for k in (1, 3, 10):
            ns = np.array([top_k(table[n.result.id], k) for n in negatives])
            ps = np.array(
                [
                    top_k(np.r_[table[c.result.id], table[negatives[j].result.id]], k)
                    for c, j in zip(chosen, join, strict=True)
                ]
            )
            spec = int((ns < np.quantile(ps, 0.01)).sum())
            print(
                f"{name:<12}{f'top{k}':<8}{auc_text(ps, ns):>30}{auc_text(ps[one], ns):>30}"
                f"{f'{spec}/{ns.size}':>20}"
            )


def cell_scores(
    truth: SlideTruth, layers: list[tuple[F64, F64]], side: float
) -> tuple[list[float], list[float]]:
    """Per abnormal cell: its grid patch's score, and the best window holding its nucleus."""
    grid, best = [], []
    for c in truth.cells:
        if not c.abnormal:
            continue
        found = []
        for xy, p in layers:
            m = (xy[:, 0] <= c.x) & (c.x < xy[:, 0] + side)
            m &= (xy[:, 1] <= c.y) & (c.y < xy[:, 1] + side)
            found.append(float(np.nanmax(p[m])) if m.any() and np.isfinite(p[m]).any() else None)
        if found[0] is None:
            continue  # outside the tiled area
        grid.append(found[0])
        best.append(max(f for f in found if f is not None))
    return grid, best


if __name__ == "__main__":
    main()
