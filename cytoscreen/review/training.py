"""Reviewed fields back into training: marks + results -> ``LabelledPatch`` records.

A field marked abnormal gives positive patches (category: its Bethesda class); normal and
artefact give negatives (artefacts are the hard negatives the model found suspicious); unsure
gives nothing. Each field is cut into a grid of model-sized patches read from the slide at
the model's resolution (pyramid levels only). All patches of one field share one split group,
so a field never lands on both sides of a train/validation split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cytoscreen.errors import CytoscreenError
from cytoscreen.io import open_slide, read_at_mpp
from cytoscreen.review.marks import Mark, open_store
from cytoscreen.review.results import load_results
from cytoscreen.slide_result import RESULT_NAME
from cytoscreen.types import LabelledPatch

LABEL_OF = {"abnormal": 1, "normal": 0, "artefact": 0}
MAX_PATCHES_PER_FIELD = 16


def patch_origins(
    box: tuple[int, int, int, int], patch_l0: float, limit: int = MAX_PATCHES_PER_FIELD
) -> list[tuple[int, int]]:
    """Level-0 top-left corners of a grid of ``patch_l0``-sized patches centred on the box.

    The grid has as many patches per side as fit (at least one, centred); the ones nearest the
    centre are kept when there are more than ``limit``.
    """
    x0, y0, x1, y1 = box
    nx = max(1, math.floor((x1 - x0) / patch_l0))
    ny = max(1, math.floor((y1 - y0) / patch_l0))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    sx, sy = cx - nx * patch_l0 / 2.0, cy - ny * patch_l0 / 2.0
    cells = [(sx + i * patch_l0, sy + j * patch_l0) for j in range(ny) for i in range(nx)]
    cells.sort(key=lambda p: (p[0] + patch_l0 / 2 - cx) ** 2 + (p[1] + patch_l0 / 2 - cy) ** 2)
    return [(round(x), round(y)) for x, y in cells[:limit]]


def usable(marks: Iterable[Mark]) -> list[Mark]:
    """Marks that carry a label for training (not unsure), latest reviewer's word per field."""
    latest: dict[tuple[str, int], Mark] = {}
    for m in marks:
        if m.label not in LABEL_OF:
            continue
        key = (m.slide_id, m.rank)
        if key not in latest or m.marked_at >= latest[key].marked_at:
            latest[key] = m
    return [latest[k] for k in sorted(latest)]


def reviewed_patches(
    results: str | Path,
    *,
    model_mpp: float,
    patch_px: int,
    model_id: str | None = None,
    backend: str = "auto",
    limit_per_field: int = MAX_PATCHES_PER_FIELD,
) -> list[LabelledPatch]:
    """Labelled patches from the review marks in ``results`` (``reviews.sqlite``).

    ``model_mpp`` and ``patch_px`` are the model's input (its card); ``model_id``, when given,
    keeps only marks made on that model's fields. Raises ``CytoscreenError`` naming the slide
    when a marked slide cannot be read (move it back, or fix the ``path`` of its slide record).
    """
    root = Path(results)
    view = load_results(root)
    with open_store(root) as store:
        marks = usable(store.marks())
    if model_id is not None:
        marks = [m for m in marks if m.model_id == model_id]
    by_slide: dict[str, list[Mark]] = {}
    for m in marks:
        by_slide.setdefault(m.slide_id, []).append(m)
    out: list[LabelledPatch] = []
    for slide_id, slide_marks in by_slide.items():
        slide = view.slide(slide_id)
        if slide is None:
            raise CytoscreenError(
                f"reviewed slide {slide_id} has no {RESULT_NAME}",
                subject=root / "slides" / slide_id,
                hint="keep the results folder whole, or delete this slide's marks",
            )
        chosen: object = slide.backend or backend
        with open_slide(slide.path, backend=chosen, mpp=slide.mpp) as reader:  # type: ignore[arg-type]
            patch_l0 = patch_px * model_mpp / reader.meta.mpp
            for m in slide_marks:
                for x, y in patch_origins((m.x0, m.y0, m.x1, m.y1), patch_l0, limit_per_field):
                    pixels = read_at_mpp(reader, (x, y), (patch_px, patch_px), model_mpp)
                    out.append(
                        LabelledPatch(
                            image=np.ascontiguousarray(pixels, dtype=np.uint8),
                            label=LABEL_OF[m.label],
                            group=f"review:{slide_id}:{m.rank}",
                            category=m.bethesda or m.label,
                            source="review",
                        )
                    )
    return out
