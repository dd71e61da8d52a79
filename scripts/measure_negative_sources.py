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

``--csv`` writes those figures per source cell (a spreadsheet of the pool); ``--sheet`` draws,
for the source cells most often among the top patches, the CRIC crop beside its
highest-scoring copies on the slides, for a cytologist to say whether the label holds.

Figures describe the generated slides the results were made from (their split's fields).
"""

from __future__ import annotations

import argparse
import csv
import heapq
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from cytoscreen.qa.generated import scored_slides
from cytoscreen.synth.slide import nucleus_patches
from cytoscreen.tiling.store import PatchStore

REPO = Path(__file__).resolve().parents[1]
TOP = 10
COPIES = 5  # copies per source cell on the sheet
TILE = 224


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--show", type=int, default=10, help="source cells listed")
    ap.add_argument("--csv", type=Path, help="write per-source-cell figures here")
    ap.add_argument("--sheet", type=Path, help="write a PNG of the top source cells here")
    ap.add_argument("--cric", type=Path, default=REPO.parent / "shared" / "data" / "cric")
    args = ap.parse_args()

    per_cell: dict[tuple[str, int], list[float]] = defaultdict(list)  # (kind, cell) -> scores
    top_count: Counter[int] = Counter()
    top_slides: dict[int, set[str]] = defaultdict(set)
    distinct, copies, n_neg = [], Counter[int](), 0
    best_copies: dict[int, list[tuple[float, str, int]]] = defaultdict(list)  # NILM cell -> heap
    for slide in scored_slides(args.results):
        r, truth, store, p = slide.result, slide.truth, slide.store, slide.p
        adequate_negative = slide.adequate_negative
        if truth.label != "positive" and not adequate_negative:
            continue
        xy = np.asarray(store.coords, float)
        where = nucleus_patches(truth, xy, float(store.attrs.size_l0))
        ids = np.array([c.cric_cell_id for c in truth.cells])
        for c, i in zip(truth.cells, where, strict=True):
            if i >= 0 and np.isfinite(p[i]) and (c.abnormal or adequate_negative):
                per_cell[("abnormal" if c.abnormal else "NILM", c.cric_cell_id)].append(p[i])
                if not c.abnormal:
                    keep = best_copies[c.cric_cell_id]
                    (heapq.heappush if len(keep) < COPIES else heapq.heappushpop)(
                        keep, (float(p[i]), str(r.cache), int(i))
                    )
        if not adequate_negative:
            continue
        n_neg += 1
        distinct.append(len(set(ids.tolist())))
        copies.update(ids.tolist())
        finite = np.flatnonzero(np.isfinite(p))
        best = set(finite[np.argsort(-p[finite])[:TOP]].tolist())
        for i, cid in zip(where.tolist(), ids.tolist(), strict=True):
            if i in best:  # a top patch holding this cell's nucleus
                top_count[cid] += 1
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
    if args.csv:
        write_csv(args.csv, per_cell, top_count, top_slides)
        print(f"\nwrote {args.csv}")
    if args.sheet:
        shown = [cid for cid, _ in top_count.most_common(args.show)]
        write_sheet(args.sheet, shown, best_copies, args.cric)
        print(f"wrote {args.sheet}")


def write_csv(
    path: Path,
    per_cell: dict[tuple[str, int], list[float]],
    top_count: Counter[int],
    top_slides: dict[int, set[str]],
) -> None:
    """One row per source cell: its copies' score statistics and its top-patch appearances."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            ["kind", "cric_cell_id", "copies", "median", "p90", "p99", "max", "top_patches",
             "top_slides"]
        )  # fmt: skip
        for (kind, cid), v in sorted(per_cell.items(), key=lambda kv: -float(np.max(kv[1]))):
            q = np.percentile(v, [50, 90, 99])
            n_top = top_count.get(cid, 0) if kind == "NILM" else 0
            n_slides = len(top_slides.get(cid, ())) if kind == "NILM" else 0
            w.writerow([kind, cid, len(v), *(f"{x:.4f}" for x in (*q, max(v))), n_top, n_slides])


def write_sheet(
    path: Path,
    shown: list[int],
    best_copies: dict[int, list[tuple[float, str, int]]],
    cric: Path,
) -> None:
    """A row per source cell: its CRIC crop (label NILM), then its best-scoring copies."""
    from PIL import Image, ImageDraw

    crops = {}
    with (cric / "manifest.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            crops[int(row["cric_cell_id"])] = cric / row["path"]
    sheet = Image.new("RGB", ((COPIES + 1) * (TILE + 4), len(shown) * (TILE + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, cid in enumerate(shown):
        y = r * (TILE + 4)
        if cid in crops and crops[cid].exists():
            crop = Image.open(crops[cid]).convert("RGB").resize((TILE, TILE))
            sheet.paste(crop, (0, y))
        draw.text((4, y + 4), f"CRIC {cid} (NILM)", fill=(0, 0, 0))
        for k, (score, cache, i) in enumerate(sorted(best_copies[cid], reverse=True)):
            patch = np.asarray(PatchStore.open(cache).images[i], dtype=np.uint8)
            x = (k + 1) * (TILE + 4)
            sheet.paste(Image.fromarray(patch).resize((TILE, TILE)), (x, y))
            draw.text((x + 4, y + 4), f"{score:.3f}", fill=(200, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


if __name__ == "__main__":
    main()
