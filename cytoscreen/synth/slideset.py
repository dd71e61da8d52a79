"""``make_slide_set``: a labelled set of synthetic slides with a manifest (see data_manifests/).

CRIC fields are partitioned by ``image_id`` *before* any slide is drawn (``cric.ImageSplits``),
so train, validation and test slides never share a field, and each slide's stain, colour,
focus, blood, density, preparation type and JPEG quality are drawn from ``Conditions`` and
written to the manifest, so results can be reported by any of them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cytoscreen.strata import ABNORMAL_STRATA, abnormal_stratum
from cytoscreen.synth.cric import SPLITS, ImageSplits, split_images
from cytoscreen.synth.kit import CellKit, load_cell_kit
from cytoscreen.synth.patches import Conditions, draw_spec
from cytoscreen.synth.slide import generate_slide, truth_paths

MANIFEST_COLUMNS = (
    "slide_id",
    "path",
    "label",
    "worst_bethesda",
    "split",
    "ground_truth",
    "site",
    "notes",
    "mpp",
    "width",
    "height",
    "n_cells",
    "n_abnormal",
    "seed",
    "prep",
    "density",
    "stain",
    "focus_um",
    "quality",
)
SITE = "synthetic"
__all__ = ["ABNORMAL_STRATA", "MANIFEST_COLUMNS", "abnormal_stratum", "draw_n_abnormal"]


def largest_remainder(n: int, fractions: Sequence[float]) -> list[int]:
    """``n`` items shared in proportion to ``fractions`` (whole numbers summing to ``n``)."""
    raw = np.asarray(fractions, float) / float(sum(fractions)) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


def draw_n_abnormal(rng: np.random.Generator) -> int:
    """Abnormal cells for a positive slide: a stratum at random (each equally likely), then
    log-uniform inside it (rounded down, so the draw never leaves its stratum)."""
    lo, hi = ABNORMAL_STRATA[int(rng.integers(len(ABNORMAL_STRATA)))]
    return min(hi, int(np.floor(np.exp(rng.uniform(np.log(lo), np.log(hi + 1.0))))))


def kit_splits(kit: CellKit, seed: int, fractions: Sequence[float]) -> ImageSplits:
    """A split of the kit's own fields by image (for kits without a committed split)."""
    crops = [c for f in kit.fields.values() for c in f.crops]
    return split_images(crops, seed=seed, fractions=fractions, every_class=False)


def make_slide_set(
    out_dir: str | Path,
    n_negative: int = 4,
    n_positive: int = 4,
    *,
    n_cells: int | tuple[int, int] = 1500,
    seed: int = 0,
    splits: ImageSplits | Sequence[float] = (0.6, 0.2, 0.2),
    only: str | None = None,
    kit: CellKit | None = None,
    n_blank: int = 0,
    mpp: float = 0.25,
    conditions: Conditions | None = None,
    n_abnormal: int | None = None,
    prep: str | None = None,
) -> Path:
    """Write slides, their ground truth and ``manifest.csv`` into ``out_dir``; return the manifest.

    ``splits``: the partition of the kit's fields (``ImageSplits``, e.g. the committed
    data_manifests/cric_splits.json), or fractions for a split of the kit's own fields. Slides
    of each label are spread over the splits in proportion to the split's fields, or all go to
    ``only`` (e.g. ``"val"``). ``n_cells``: labelled cells per slide, or a (low, high) range
    drawn log-uniformly. ``n_abnormal``: abnormal cells per positive slide (None: drawn over
    ``ABNORMAL_STRATA``). Blank slides (no cells) go to ``test`` (or ``only``): a pipeline
    must call them not assessable.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kit = kit if kit is not None else load_cell_kit()
    image_splits = splits if isinstance(splits, ImageSplits) else kit_splits(kit, seed, splits)
    kits = {
        s: kit.subset(image_splits.images[s] & set(kit.fields), source=f"{kit.source} [{s}]")
        for s in SPLITS
    }
    shares = [float(only == s) if only else len(kits[s].fields) for s in SPLITS]
    plan: list[tuple[str, str]] = []
    for label, n in (("negative", n_negative), ("positive", n_positive)):
        for split, k in zip(SPLITS, largest_remainder(n, shares), strict=True):
            plan += [(label, split)] * k
    plan += [("blank", only or "test")] * n_blank
    rng = np.random.default_rng(seed)
    rows = []
    for i, (label, split) in enumerate(plan):
        slide_id = f"synth_{seed:04d}_{i:03d}"
        sub = kits[split]
        if label == "positive" and not sub.units:
            raise ValueError(f"split {split} has no abnormal cells: use larger split fractions")
        cells = (
            n_cells
            if isinstance(n_cells, int)
            else int(round(np.exp(rng.uniform(np.log(n_cells[0]), np.log(n_cells[1])))))
        )
        n_ab = n_abnormal if n_abnormal is not None else draw_n_abnormal(rng)
        spec = draw_spec(
            rng,
            label=label,
            n_cells=max(cells, 1),
            n_abnormal=n_ab,
            prep=prep,
            mpp=mpp,
            seed=seed * 10_007 + i,
            conditions=conditions or Conditions(),
        )
        path = out / "slides" / f"{slide_id}.tiff"
        truth = generate_slide(path, spec, sub)
        json_path, _ = truth_paths(path)
        rows.append(
            {
                "slide_id": slide_id,
                "path": path.relative_to(out).as_posix(),
                "label": truth.label,
                "worst_bethesda": truth.worst_bethesda or "",
                "split": split,
                "ground_truth": json_path.relative_to(out).as_posix(),
                "site": SITE,
                "notes": "blank: no cells, not assessable" if label == "blank" else "",
                "mpp": mpp,
                "width": truth.width,
                "height": truth.height,
                "n_cells": len(truth.cells),
                "n_abnormal": truth.n_abnormal,
                "seed": spec.seed,
                "prep": spec.prep,
                "density": round(spec.density, 1),
                "stain": round(spec.stain, 3),
                "focus_um": round(spec.focus_um, 3),
                "quality": spec.quality,
            }
        )
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out / "splits.json").write_text(
        json.dumps({k: sorted(v) for k, v in image_splits.images.items()}), encoding="utf-8"
    )
    return manifest
