"""Which source cells make a negative slide's best patches: what the slide specificity rests on.

    .venv/bin/python scripts/measure_negative_sources.py work/cal2/results

A generated adequate negative holds 5,000-11,000 labelled NILM cells, but they are drawn from
the NILM cells of its split's fields that keep clear of every labelled abnormal nucleus, so
the same source cells recur on every slide, many times each. This traces each adequate
negative's ten best patches (the cells of the default rule, top_k_mean(k=10)) back to the CRIC
cells whose nuclei they hold and prints:

- the pool: distinct source cells per slide and over all negatives, copies per cell;
- the source cells found most often among the negatives' top-10 patches, and on how many
  slides;
- per distinct source cell, the median and 90th percentile of the scores of the patches
  holding its nucleus (over all its copies): how many NILM cells of the pool reach 0.5 / 0.9 /
  0.99, against the abnormal source cells of the positives.

Figures describe the generated slides the results were made from (their split's fields).
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cytoscreen.slide_result import load_results
from cytoscreen.synth.slide import SlideTruth, load_truth
from cytoscreen.tiling.store import PatchStore

ADEQUATE = 5000
TOP = 10


def patch_of_cells(truth: SlideTruth, xy: npt.NDArray[np.float64], side: float) -> npt.NDArray:
    """Per labelled cell of the slide, the index of the patch holding its nucleus (-1: none)."""
    out = np.full(len(truth.cells), -1)
    centres = np.array([(c.x, c.y) for c in truth.cells], float).reshape(-1, 2)
    for lo in range(0, len(centres), 500):
        c = centres[lo : lo + 500, None, :]
        inside = ((xy[None] <= c) & (c < xy[None] + side)).all(axis=2)
        found = np.any(inside, axis=1)
        out[lo : lo + 500][found] = inside.argmax(axis=1)[found]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--show", type=int, default=10, help="source cells listed")
    args = ap.parse_args()

    per_cell: dict[tuple[str, int], list[float]] = defaultdict(list)  # (kind, cell) -> scores
    top_count: Counter[int] = Counter()
    top_slides: dict[int, set[str]] = defaultdict(set)
    distinct, copies, n_neg = [], Counter[int](), 0
    for r in load_results(args.results):
        if r.path is None or r.cache is None or r.model_id is None:
            continue
        truth = load_truth(Path(r.path).with_suffix(".cells.json"))
        adequate_negative = truth.label == "negative" and len(truth.cells) >= ADEQUATE
        if truth.label != "positive" and not adequate_negative:
            continue
        store = PatchStore.open(r.cache)
        scores = store.scores(r.model_id)
        if scores is None:
            continue
        p = np.asarray(scores.stage()[:], float)
        xy = np.asarray(store.coords, float)
        where = patch_of_cells(truth, xy, float(store.attrs.size_l0))
        ids = np.array([c.cric_cell_id for c in truth.cells])
        for c, i in zip(truth.cells, where, strict=True):
            if i >= 0 and np.isfinite(p[i]) and (c.abnormal or adequate_negative):
                per_cell[("abnormal" if c.abnormal else "NILM", c.cric_cell_id)].append(p[i])
        if not adequate_negative:
            continue
        n_neg += 1
        distinct.append(len(set(ids.tolist())))
        copies.update(ids.tolist())
        finite = np.flatnonzero(np.isfinite(p))
        best = set(finite[np.argsort(-p[finite])[:TOP]].tolist())
        for cid in set(ids[[i in best for i in where]].tolist()):
            top_count[cid] += sum(
                1 for i, c in zip(where, ids, strict=True) if c == cid and i in best
            )
            top_slides[cid].add(r.id)

    pool = len(copies)
    print(
        f"{n_neg} adequate negatives: {int(np.median(distinct))} distinct NILM source cells per "
        f"slide (median; min {min(distinct)}, max {max(distinct)}), {pool} over all of them; "
        f"copies of a source cell on one slide: median "
        f"{np.median([n / n_neg for n in copies.values()]):.1f}"
    )
    print(f"\nsource cells most often among the negatives' top-{TOP} patches:")
    print(f"{'CRIC cell':>10}{'top patches':>13}{'slides':>9}{'median score':>14}")
    for cid, n in top_count.most_common(args.show):
        med = float(np.median(per_cell[("NILM", cid)])) if ("NILM", cid) in per_cell else np.nan
        print(f"{cid:>10}{n:>13}{f'{len(top_slides[cid])}/{n_neg}':>9}{med:>14.3f}")
    print("\nper distinct source cell, the median and the 90th percentile of the scores of the")
    print("patches holding its nucleus (over all its copies): cells at or above")
    print(f"{'cells':<10}{'statistic':<12}{'n':>6}{'>= 0.5':>9}{'>= 0.9':>9}{'>= 0.99':>9}")
    for kind in ("NILM", "abnormal"):
        for name, q in (("median", 50), ("90th pct", 90)):
            per = np.array([np.percentile(v, q) for (k, _), v in per_cell.items() if k == kind])
            row = "".join(f"{int((per >= t).sum()):>9}" for t in (0.5, 0.9, 0.99))
            print(f"{kind:<10}{name:<12}{per.size:>6}{row}")


if __name__ == "__main__":
    main()
