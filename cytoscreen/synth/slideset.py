"""``make_slide_set``: a labelled set of synthetic slides with a manifest (see data_manifests/).

Source cells are partitioned by ``cric_cell_id`` *before* any slide is drawn, so train,
validation and test slides never share a cell.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from cytoscreen.synth.kit import CellKit, load_cell_kit
from cytoscreen.synth.layout import SlideSpec
from cytoscreen.synth.slide import generate_slide, truth_paths

SPLITS = ("train", "val", "test")
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
)
SITE = "synthetic"


def largest_remainder(n: int, fractions: Sequence[float]) -> list[int]:
    """``n`` items shared in proportion to ``fractions`` (whole numbers summing to ``n``)."""
    raw = np.asarray(fractions, float) / float(sum(fractions)) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


def split_cells(kit: CellKit, fractions: Sequence[float], seed: int) -> dict[str, frozenset[int]]:
    """Partition cric_cell_ids into splits, stratified by Bethesda class (deterministic)."""
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"splits must be three non-negative fractions, got {fractions}")
    rng = np.random.default_rng(seed)
    out: dict[str, set[int]] = {s: set() for s in SPLITS}
    for cls in kit.classes():
        ids = np.unique(kit.cell_ids[kit.indices_of(cls)])
        ids = ids[rng.permutation(ids.size)]
        start = 0
        for name, k in zip(SPLITS, largest_remainder(ids.size, fractions), strict=True):
            out[name].update(int(i) for i in ids[start : start + k])
            start += k
    return {k: frozenset(v) for k, v in out.items()}


def make_slide_set(
    out_dir: str | Path,
    n_negative: int = 4,
    n_positive: int = 4,
    size: int = 4096,
    *,
    seed: int = 0,
    splits: Sequence[float] = (0.6, 0.2, 0.2),
    kit: CellKit | None = None,
    n_blank: int = 0,
    mpp: float | None = 0.25,
    cell_bearing: float | None = None,
    clustering: float | None = None,
    cell_splits: Mapping[str, Iterable[int]] | None = None,
) -> Path:
    """Write slides, their ground truth and ``manifest.csv`` into ``out_dir``; return the manifest.

    Slides of each label are spread over the splits in the given proportions; each split's
    slides are drawn only from that split's cells. ``cell_splits`` gives the partition of
    cric_cell_ids explicitly (e.g. the model's training splits in data_manifests/cric_splits.json)
    instead of drawing one from ``seed``. Blank slides (no cells) go to ``test``
    with worst_bethesda empty: a pipeline should call them not assessable.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kit = kit if kit is not None else load_cell_kit()
    cells = (
        {s: frozenset(int(i) for i in cell_splits.get(s, ())) for s in SPLITS}
        if cell_splits is not None
        else split_cells(kit, splits, seed)
    )
    kits = {s: kit.subset(ids, source=f"{kit.source} [{s}]") for s, ids in cells.items()}
    plan: list[tuple[str, str]] = []
    for label, n in (("negative", n_negative), ("positive", n_positive)):
        for split, k in zip(SPLITS, largest_remainder(n, splits), strict=True):
            plan += [(label, split)] * k
    plan += [("blank", "test")] * n_blank
    rows = []
    for i, (label, split) in enumerate(plan):
        slide_id = f"synth_{seed:04d}_{i:03d}"
        density = {
            k: v
            for k, v in (("cell_bearing", cell_bearing), ("clustering", clustering))
            if v is not None
        }
        spec = SlideSpec(size=size, label=label, seed=seed * 10_007 + i, mpp=mpp, **density)  # type: ignore[arg-type]
        sub = kits[split]
        if label == "positive" and not any(b != "NILM" for b in sub.bethesda):
            raise ValueError(f"split {split} has no abnormal cells: use larger split fractions")
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
                "mpp": "" if mpp is None else mpp,
                "width": truth.width,
                "height": truth.height,
                "n_cells": len(truth.cells),
                "n_abnormal": truth.n_abnormal,
                "seed": spec.seed,
            }
        )
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out / "splits.json").write_text(
        json.dumps({k: sorted(v) for k, v in cells.items()}), encoding="utf-8"
    )
    return manifest
