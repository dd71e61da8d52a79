"""How the score of an abnormal cell depends on where the patch grid cuts it.

    .venv/bin/python scripts/measure_cell_position.py work/cal2/results --reread 200

Part 1 (scores already in the results): for every abnormal cell of every positive slide of a
scores-only results folder of generated slides, the score of the grid patch holding its
nucleus centre, by the centre's distance to the nearest edge of that patch, and the best score
of the 3 x 3 patches around it.

Part 2 (``--reread N``): N abnormal cells of positive slides and N NILM cells of adequate
negative slides, drawn at random, read again from the slide files with the nucleus at a fixed
distance from one patch edge (112 px = centred, down to 12 px; the side is drawn at random)
and scored with the model that scored the results. Same cells at every distance, so the rows
differ only in where the patch cuts them.

Figures describe generated slides of the fields the results were made from (say which in any
report), not clinical performance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cytoscreen.io.opener import open_slide
from cytoscreen.qa.generated import scored_slides
from cytoscreen.scoring.scorer import Scorer
from cytoscreen.synth.slide import CellTruth

REPO = Path(__file__).resolve().parents[1]
BANDS = ((0, 24), (24, 48), (48, 80), (80, 113))  # distance to the patch edge, level-0 px
EDGES = (112, 84, 56, 36, 24, 12)  # part 2: nucleus this far from one edge (112: centred)


def _row(name: str, s: npt.NDArray[np.float64]) -> str:
    return (
        f"{name:<22}{s.size:>7}{np.median(s):>9.3f}{np.mean(s >= 0.5):>9.3f}"
        f"{np.mean(s >= 0.9):>9.3f}"
    )


def _header(first: str) -> str:
    return f"{first:<22}{'n':>7}{'median':>9}{'>=0.5':>9}{'>=0.9':>9}"


Cells = list[tuple[str, CellTruth]]


def grid_table(results: Path) -> tuple[str, Cells, Cells, int]:
    """Part 1's table, the (slide path, cell) pairs part 2 draws from and the patch side in
    level-0 px."""
    score, edge, best = [], [], []
    abnormal: Cells = []
    nilm: Cells = []
    model_id = None
    side = 224.0
    for slide in scored_slides(results):
        r, truth, store, prob = slide.result, slide.truth, slide.store, slide.p
        assert r.path is not None  # scored_slides reads the truth beside it
        model_id = r.model_id
        if slide.adequate_negative:
            nilm += [(r.path, c) for c in truth.cells]
        if truth.label != "positive":
            continue
        xy = np.asarray(store.coords, float)
        side = float(store.attrs.size_l0)
        for c in truth.cells:
            if not c.abnormal:
                continue
            abnormal.append((r.path, c))
            rx, ry = c.x - xy[:, 0], c.y - xy[:, 1]
            held = np.flatnonzero((rx >= 0) & (rx < side) & (ry >= 0) & (ry < side))
            if held.size == 0 or np.isnan(prob[held[0]]):
                continue  # outside the tiled area
            i = held[0]
            near = (np.abs(xy[:, 0] - xy[i, 0]) <= side * 1.01) & (
                np.abs(xy[:, 1] - xy[i, 1]) <= side * 1.01
            )
            score.append(prob[i])
            edge.append(min(rx[i], side - rx[i], ry[i], side - ry[i]) * 224.0 / side)
            best.append(np.nanmax(prob[near]))
    if not abnormal:
        raise SystemExit(f"{results}: no positive slide with scores")
    s, e, b = np.array(score), np.array(edge), np.array(best)
    lines = [f"part 1: {s.size} abnormal cells in the tiled area, model {model_id}"]
    lines.append(_header("edge distance (px)"))
    for lo, hi in BANDS:
        m = (e >= lo) & (e < hi)
        lines.append(
            _row(f"{lo}-{hi - 1}", s[m]) + f"   best of 3x3 >=0.5: {np.mean(b[m] >= 0.5):.3f}"
        )
    lines.append(_row("all", s) + f"   best of 3x3 >=0.5: {np.mean(b >= 0.5):.3f}")
    return "\n".join(lines), abnormal, nilm, round(side)


def reread_table(
    cells: Cells, scorer: Scorer, patch_l0: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Scores (cells x EDGES) of each cell read with its nucleus ``EDGES`` px from one edge."""
    images = []
    for path, c in cells:
        with open_slide(path) as slide:
            for d in EDGES:
                x0 = y0 = -patch_l0 // 2
                side = int(rng.integers(4))
                off = -d if side % 2 == 0 else d - patch_l0
                if side < 2:
                    x0 = off
                else:
                    y0 = off
                loc = (int(round(c.x)) + x0, int(round(c.y)) + y0)
                images.append(np.asarray(slide.read_region(loc, 0, (patch_l0, patch_l0)))[..., :3])
    prob = scorer.predict(np.stack(images))[:, 1]
    return np.asarray(prob, float).reshape(len(cells), len(EDGES))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="scores-only results folder of generated slides")
    ap.add_argument("--reread", type=int, default=0, help="cells per class for part 2")
    ap.add_argument("--model", type=Path, default=REPO / "cytoscreen" / "models" / "default")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    table, abnormal, nilm, patch_l0 = grid_table(args.results)
    print(table)
    if args.reread <= 0:
        return
    scorer = Scorer.load(args.model, runtime="auto")
    rng = np.random.default_rng(args.seed)
    print(
        "\npart 2: cells re-read with the nucleus at a set distance from one edge "
        f"({scorer.runtime_used})"
    )
    for name, pool in (("abnormal", abnormal), ("NILM", nilm)):
        if not pool:
            continue
        pick = [pool[i] for i in rng.choice(len(pool), min(args.reread, len(pool)), replace=False)]
        p = reread_table(pick, scorer, patch_l0, rng)
        print(_header(f"{name}: edge px"))
        for j, d in enumerate(EDGES):
            print(_row(f"{d}" + (" (centred)" if d == 112 else ""), p[:, j]))


if __name__ == "__main__":
    main()
