"""Evaluation sets and helpers shared by training, the model comparison and the test report.

An ``EvalSet`` is a fixed list of patches at the model's resolution with labels, Bethesda
categories and a part name:

- ``cells``: one patch per labelled cell of the split's fields, the cell inside its own piece
  (``synth.patches.cell_patches``): abnormal cells against NILM cells, the discrimination
  screening needs (the **cells-only AUC**);
- ``slides``: windows of virtual slides of the split's fields, half of them holding an abnormal
  nucleus, the rest anywhere among NILM cells, blood and debris (what a screened slide's
  patches look like).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from cytoscreen.scoring.infer import Scorer
from cytoscreen.synth.kit import CellKit
from cytoscreen.synth.patches import VirtualSlides, cell_patches

CELLS, SLIDES = "cells", "slides"


@dataclass(frozen=True)
class EvalSet:
    images: npt.NDArray[np.uint8]  # (N, P, P, 3)
    labels: npt.NDArray[np.int64]
    categories: tuple[str, ...]  # Bethesda class, or slide_nilm / slide_abnormal
    parts: tuple[str, ...]  # CELLS or SLIDES
    skipped_nilm: int = 0  # NILM cells shown by no negative piece (not in the cells part)

    def __len__(self) -> int:
        return int(self.labels.size)

    def part(self, name: str) -> npt.NDArray[np.bool_]:
        return np.asarray(self.parts) == name


def slide_windows(
    slides: VirtualSlides, n: int, seed: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """``n`` fixed windows of ``slides``: half holding an abnormal nucleus, half not."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k in range(n):
        window = slides.positive_window(rng) if k % 2 else slides.negative_window(rng)
        if window is None:
            continue
        images.append(slides.render(*window))
        labels.append(k % 2)
    return np.stack(images), np.array(labels, np.int64)


def build_eval_set(
    kit: CellKit,
    *,
    mpp: float,
    patch_px: int,
    n_slides: int,
    n_windows: int,
    n_cells: int = 1500,
    seed: int = 0,
    limit_cells: int | None = None,
) -> EvalSet:
    """The cells and slide windows of one split's fields (deterministic for a seed)."""
    cp = cell_patches(kit, mpp=mpp, patch_px=patch_px, seed=seed, limit=limit_cells)
    vs = VirtualSlides(
        kit,
        n_negative=n_slides // 2,
        n_positive=n_slides - n_slides // 2,
        mpp=mpp,
        patch_px=patch_px,
        n_cells=n_cells,
        seed=seed + 7_000,
    )
    wi, wl = slide_windows(vs, n_windows, seed + 1)
    cats = cp.bethesda + tuple("slide_abnormal" if v else "slide_nilm" for v in wl.tolist())
    return EvalSet(
        images=np.concatenate([cp.images, wi]),
        labels=np.concatenate([cp.labels, wl]),
        categories=cats,
        parts=(CELLS,) * len(cp.labels) + (SLIDES,) * len(wl),
        skipped_nilm=cp.skipped_nilm,
    )


def positive_scores(scorer: Scorer, images: npt.NDArray[np.uint8], batch: int = 32) -> np.ndarray:
    probs = scorer.predict(images, batch)
    return probs[:, scorer.card.positive_indices()].sum(axis=1).astype(np.float32)


def throughput(scorer: Scorer, n: int = 128, batch: int = 32, seed: int = 0) -> float:
    """Patches per second of ``scorer`` on in-memory uint8 patches (after one warm-up batch)."""
    _, h, w = scorer.card.preprocessing.input_size
    pix = np.random.default_rng(seed).integers(150, 256, (batch, h, w, 3), dtype=np.uint8)
    scorer.predict(pix[:2], batch)
    reps = max(1, n // batch)
    t = time.perf_counter()
    for _ in range(reps):
        scorer.predict(pix, batch)
    if scorer.device_type == "cuda":
        torch.cuda.synchronize()
    return reps * batch / (time.perf_counter() - t)
