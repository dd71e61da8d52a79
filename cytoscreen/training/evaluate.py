"""Validation helpers shared by the training and comparison scripts: a fixed rendered
validation set, AUC per inference precision/layout, and inference throughput."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from cytoscreen.scoring.infer import Scorer
from cytoscreen.training.config import TrainConfig
from cytoscreen.training.data import Example, PatchDataset, label_of


def render_eval_set(
    examples: Sequence[Example], cfg: TrainConfig
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The validation patches exactly as training's evaluation draws them (seeded per item)."""
    ds = PatchDataset(
        examples,
        patch_px=cfg.patch_px,
        crop_mpp=cfg.crop_mpp,
        mpp=cfg.mpp,
        train=False,
        seed=cfg.seed,
        neighbour_p=cfg.neighbour_p,
        empty_p=cfg.empty_p,
    )
    images = (
        np.stack([ds.patch(i) for i in range(len(ds))]) if len(ds) else np.zeros((0,), np.uint8)
    )
    return images.astype(np.uint8), np.array([label_of(e) for e in examples], dtype=np.int64)


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
