"""How often the model scores high on NILM material, by how near that material lay to a
labelled abnormal cell in its real CRIC field: the label-noise check behind
``synth.fields.NEGATIVE_CLEARANCE``.

    .venv/bin/python scripts/measure_label_noise.py work/calibration/results

For every adequate negative slide (label negative, at least 5,000 labelled cells) in a
scores-only results folder of generated slides, each scored patch is traced back into the
source fields of the labelled cells it holds (their slide position against their position in
the field), and the distance from the patch centre to the nearest *labelled abnormal* nucleus
of that field is taken. Not every cell of a CRIC field is labelled, so a "NILM" patch near a
labelled abnormal cell may show its unlabelled abnormal neighbours. The table gives the share
of patches at or above 0.5 / 0.9 / 0.99 in each distance band, and for patches whose cells
come only from fields with no abnormal label at all, and for patches with no labelled cell.

It then recomputes the slides' top_k_mean(k=10) score from the patches at least D px from a
labelled abnormal nucleus (D = 0, 250, 400, 600, and NILM-only fields), with each positive
joined to a random negative's kept patches ("full size"), and prints the slide AUC and the
specificity at the positives' 1st-percentile score. That is an estimate on fewer patches per
slide, not a screen of clean slides: it says whether the near material is where the normal tail
lives. Figures describe generated slides, not clinical performance.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from cytoscreen.qa.generated import scored_slides
from cytoscreen.synth.cric import read_cric

REPO = Path(__file__).resolve().parents[1]
FAR = 1e9  # the patch's cells come from fields with no labelled abnormal nucleus
NO_CELL = 2e9  # no labelled cell in the patch (glass, blood, debris, cytoplasm)
BANDS = ((0, 150), (150, 250), (250, 400), (400, 600), (600, 1000), (1000, FAR))


def _top_k(p: np.ndarray, k: int = 10) -> float:
    return float(np.mean(np.sort(p)[::-1][:k])) if p.size else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="scores-only results folder of generated slides")
    ap.add_argument("--cric", type=Path, default=REPO.parent / "shared" / "data" / "cric")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    crops = read_cric(args.cric / "manifest.csv", check_files=False)
    by_id = {c.cell_id: c for c in crops}
    points: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for k in crops:
        if k.abnormal:
            points[k.image_id].append((float(k.nucleus_x), float(k.nucleus_y)))
    abnormal = {k: np.array(v) for k, v in points.items()}  # (M, 2) per field
    none = np.empty((0, 2))

    negatives: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    positives: list[np.ndarray] = []
    for slide in scored_slides(args.results):
        r, truth, store, prob = slide.result, slide.truth, slide.store, slide.p
        if truth.label == "positive":
            positives.append(prob[~np.isnan(prob)])
            continue
        if not slide.adequate_negative:
            continue
        side = round(store.attrs.size_l0)
        cells = defaultdict(list)
        for c in truth.cells:
            cells[(int(c.x) // side, int(c.y) // side)].append(c)
        dist = np.full(len(prob), NO_CELL)
        for i, (x, y) in enumerate(store.coords):
            held = cells.get((int(x) // side, int(y) // side), ())
            if held:
                dist[i] = FAR
            for c in held:
                crop = by_id[c.cric_cell_id]
                # the patch centre in the source field's coordinates
                fx = x + side / 2 + crop.nucleus_x - c.x
                fy = y + side / 2 + crop.nucleus_y - c.y
                ab = abnormal.get(crop.image_id, none)
                if ab.size:
                    dist[i] = min(dist[i], float(np.hypot(ab[:, 0] - fx, ab[:, 1] - fy).min()))
        ok = ~np.isnan(prob)
        negatives[r.id] = (prob[ok], dist[ok])
    if not negatives or not positives:
        raise SystemExit(f"{args.results}: needs adequate negative and positive slides")

    p = np.concatenate([v[0] for v in negatives.values()])
    d = np.concatenate([v[1] for v in negatives.values()])
    print(
        f"{len(negatives)} adequate negatives ({p.size} scored patches), {len(positives)} "
        "positives; patch centre to the nearest labelled abnormal nucleus of its source field"
    )
    print(f"{'distance (field px)':<26}{'patches':>9}{'>=0.5':>9}{'>=0.9':>9}{'>=0.99':>9}")
    rows = [(f"{lo:g}-{hi:g}", (d >= lo) & (d < hi)) for lo, hi in BANDS]
    rows.append(("fields with no abnormal", d == FAR))
    rows.append(("no labelled cell", d == NO_CELL))
    for name, sel in rows:
        q = p[sel]
        rates = [f"{np.mean(q >= t):9.4f}" if q.size else f"{'-':>9}" for t in (0.5, 0.9, 0.99)]
        print(f"{name:<26}{sel.sum():>9}{''.join(rates)}")

    rng = np.random.default_rng(args.seed)
    keys = list(negatives)
    print("\nslides from the patches at least D px away (top_k_mean(k=10); estimate)")
    print(f"{'D':<10}{'patches/neg':>12}{'AUC':>8}{'spec@99%':>10}{'neg median':>12}")
    for far in (0.0, 250.0, 400.0, 600.0, FAR):
        kept = {k: pr[di >= far] for k, (pr, di) in negatives.items()}
        neg = np.array([_top_k(v) for v in kept.values()])
        pos = np.array([_top_k(np.concatenate([q, kept[keys[rng.integers(len(keys))]]]))
                        for q in positives])  # fmt: skip
        auc = roc_auc_score(np.r_[np.ones(pos.size), np.zeros(neg.size)], np.r_[pos, neg])
        spec = np.mean(neg < np.quantile(pos, 0.01))
        label = "NILM-only" if far >= FAR else f"{far:g}"
        print(f"{label:<10}{np.median([v.size for v in kept.values()]):>12.0f}{auc:>8.3f}"
              f"{spec:>10.2f}{np.median(neg):>12.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
