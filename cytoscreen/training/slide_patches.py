"""Training patches cut from generated slides: realistic NILM-crowded negatives (hard
negatives) and abnormal cells in context.

Patches are read through the screening tiler (``tile_slide`` + ``open_cache``) at the model's
resolution, so training sees exactly what screening sees. A patch is positive when the centre
of an abnormal cell (``<slide>.cells.json`` ground truth) lies inside it; a patch that an
abnormal cell's box overlaps without its centre is ambiguous and left out. Every patch of a
slide carries the group ``slide:<slide_id>``, so a slide stays on one side of any split.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cytoscreen.config import load_config
from cytoscreen.errors import BadManifest
from cytoscreen.synth import load_truth
from cytoscreen.tiling import open_cache, tile_slide
from cytoscreen.training.data import LabelledPatch

SOURCE = "slides"  # LabelledPatch.source prefix of these patches (the ``mix`` key)
AMBIGUOUS = -1
MANIFEST_NEEDS = {"slide_id", "path", "ground_truth"}


@dataclass(frozen=True)
class SlideRow:
    slide_id: str
    path: Path
    truth: Path


def patch_labels(
    coords: npt.NDArray[np.int64],
    size_l0: float,
    centres: npt.NDArray[np.float64],
    boxes: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """1 where an abnormal cell centre lies in the patch ``[x, x + size_l0)``, ``AMBIGUOUS``
    where only an abnormal cell's box (x0, y0, x1, y1, exclusive) overlaps it, else 0.

    ``coords`` (N, 2) are patch top-left corners, ``centres`` (M, 2) and ``boxes`` (M, 4) the
    abnormal cells, all level-0 pixels.
    """
    n = coords.shape[0]
    if n == 0 or centres.shape[0] == 0:
        return np.zeros(n, dtype=np.int64)
    x0 = coords[:, 0:1].astype(np.float64)
    y0 = coords[:, 1:2].astype(np.float64)
    x1, y1 = x0 + size_l0, y0 + size_l0
    cx, cy = centres[None, :, 0], centres[None, :, 1]
    inside = ((cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)).any(axis=1)
    bx0, by0, bx1, by1 = (boxes[None, :, k] for k in range(4))
    touches = ((bx0 < x1) & (bx1 > x0) & (by0 < y1) & (by1 > y0)).any(axis=1)
    out = np.where(touches, AMBIGUOUS, 0).astype(np.int64)
    out[inside] = 1
    return out


def choose_patches(
    labels: npt.NDArray[np.int64], max_negative: int | None, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Indices to keep: every positive, and at most ``max_negative`` negatives drawn at random
    (None: all); ambiguous patches never. Sorted, so the cache is read in order."""
    pos = np.flatnonzero(labels == 1)
    neg = np.flatnonzero(labels == 0)
    if max_negative is not None and neg.size > max_negative:
        neg = rng.choice(neg, size=max_negative, replace=False)
    return np.sort(np.concatenate([pos, neg])).astype(np.int64)


def read_slide_manifest(manifest: str | Path) -> list[SlideRow]:
    """Rows of a generated slide set's manifest.csv (``make_slide_set``, i.e.
    ``cytoscreen make-slides``); paths are relative to the manifest's folder."""
    manifest = Path(manifest)
    try:
        with manifest.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = MANIFEST_NEEDS - set(reader.fieldnames or [])
            if missing:
                raise BadManifest(
                    f"missing columns {sorted(missing)}",
                    subject=manifest,
                    hint="use a manifest.csv written by `cytoscreen make-slides --out FOLDER`",
                )
            rows = list(reader)
    except FileNotFoundError:
        raise BadManifest(
            "slide manifest not found",
            subject=manifest,
            hint="generate slides with `cytoscreen make-slides --out FOLDER`",
        ) from None
    root = manifest.parent
    out = [SlideRow(r["slide_id"], root / r["path"], root / r["ground_truth"]) for r in rows]
    lost = [str(r.path) for r in out if not r.path.is_file()]
    lost += [str(r.truth) for r in out if not r.truth.is_file()]
    if lost:
        raise BadManifest(f"files listed but missing: {lost[:5]}", subject=manifest)
    return out


def slide_patches(
    row: SlideRow,
    cache_dir: str | Path,
    *,
    max_negative: int | None,
    seed: int = 0,
    mpp: float = 0.5,
    patch_px: int = 224,
) -> list[LabelledPatch]:
    """Labelled patches of one generated slide, tiled at ``mpp`` / ``patch_px`` (cached)."""
    cfg = load_config(
        overrides={
            "tiling.target_mpp": mpp,
            "tiling.patch_size": patch_px,
            "tiling.overlap": 0,
            "cache.scheduler": "synchronous",
        }
    )
    cache = open_cache(tile_slide(row.path, cfg, cache_dir))
    truth = load_truth(row.truth)
    abnormal = [c for c in truth.cells if c.abnormal]
    centres = np.array([(c.x, c.y) for c in abnormal], dtype=np.float64).reshape(-1, 2)
    boxes = np.array([c.bbox for c in abnormal], dtype=np.float64).reshape(-1, 4)
    size_l0 = cache.attrs.size_l0
    labels = patch_labels(cache.coords, size_l0, centres, boxes)
    labels[~cache.valid] = AMBIGUOUS  # unreadable patches are never trained on
    rng = np.random.default_rng([seed, zlib.crc32(row.slide_id.encode())])
    keep = choose_patches(labels, max_negative, rng)
    if keep.size == 0:
        return []
    images = np.asarray(cache.images.get_orthogonal_selection((keep,)), dtype=np.uint8)
    kind = "slide_abnormal" if truth.label == "positive" else "slide_negative"
    return [
        LabelledPatch(
            image=images[j],
            label=int(labels[i]),
            group=f"slide:{row.slide_id}",
            category=f"{kind}:{'abnormal' if labels[i] == 1 else 'nilm'}",
            source=f"{SOURCE}:{row.slide_id}",
        )
        for j, i in enumerate(keep)
    ]


def load_slide_patches(
    manifests: Sequence[str | Path],
    cache_dir: str | Path,
    *,
    max_negative: int | None,
    seed: int = 0,
    mpp: float = 0.5,
    patch_px: int = 224,
) -> list[LabelledPatch]:
    """Labelled patches of every slide listed in ``manifests`` (see ``slide_patches``)."""
    out: list[LabelledPatch] = []
    for manifest in manifests:
        for row in read_slide_manifest(manifest):
            out += slide_patches(
                row, cache_dir, max_negative=max_negative, seed=seed, mpp=mpp, patch_px=patch_px
            )
    return out
