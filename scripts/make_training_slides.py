"""Generate training slides from the CRIC *train* cells only (data_manifests/cric_splits.json).

    nice -n 10 .venv/bin/python scripts/make_training_slides.py --out work/train_slides \
        --negative 8 --positive 12 --abnormal 30

Positive slides carry ``--abnormal`` abnormal cells each (more than a real slide's ~3, so the
patches cut from them hold enough positives); negative slides are NILM only. The slides, their
cells.json ground truth and a manifest.csv (the columns of ``make_slide_set``) are written to
``--out``; ``cytoscreen.training.slide_patches`` cuts the labelled patches from them.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from cytoscreen.synth import SlideSpec, generate_slide, load_cell_kit
from cytoscreen.synth.slide import truth_paths
from cytoscreen.synth.slideset import MANIFEST_COLUMNS, SITE
from cytoscreen.training.splits import load_cell_splits


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--negative", type=int, default=8)
    ap.add_argument("--positive", type=int, default=12)
    ap.add_argument("--abnormal", type=int, default=30, help="abnormal cells per positive slide")
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--clustering", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=7100)
    args = ap.parse_args()

    kit = load_cell_kit()
    train_ids = load_cell_splits().ids["train"]
    sub = kit.subset(train_ids, source=f"{kit.source} [train]")
    # interleaved, so a run stopped early still has both labels
    n = args.negative + args.positive
    plan = [
        "positive" if (k + 1) * args.positive // n > k * args.positive // n else "negative"
        for k in range(n)
    ]
    rows = []
    for i, label in enumerate(plan):
        t0 = time.perf_counter()
        slide_id = f"train_{args.seed:04d}_{i:03d}"
        spec = SlideSpec(
            size=args.size,
            label=label,  # type: ignore[arg-type]
            seed=args.seed * 10_007 + i,
            clustering=args.clustering,
            n_abnormal=args.abnormal if label == "positive" else None,
        )
        path = args.out / "slides" / f"{slide_id}.tiff"
        truth = generate_slide(path, spec, sub)
        json_path, _ = truth_paths(path)
        rows.append(
            {
                "slide_id": slide_id,
                "path": path.relative_to(args.out).as_posix(),
                "label": truth.label,
                "worst_bethesda": truth.worst_bethesda or "",
                "split": "train",
                "ground_truth": json_path.relative_to(args.out).as_posix(),
                "site": SITE,
                "notes": "cells from the CRIC train split only",
                "mpp": spec.mpp,
                "width": truth.width,
                "height": truth.height,
                "n_cells": len(truth.cells),
                "n_abnormal": truth.n_abnormal,
                "seed": spec.seed,
            }
        )
        # manifest rewritten after every slide: a stopped run still leaves a usable set
        with (args.out / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        print(
            f"{slide_id} {label}: {len(truth.cells)} cells, {truth.n_abnormal} abnormal "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
