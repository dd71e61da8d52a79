"""Nucleus counting for cellularity: dark bluish blobs of nucleus size, counted once per patch."""

from __future__ import annotations

import numpy as np
import pytest

from cytoscreen.tiling.nuclei import count_per_patch, nuclei_centres

NUCLEUS_RGB = (60, 55, 110)  # dark blue-purple chromatin
CYTOPLASM_RGB = (230, 170, 140)  # pale orange cytoplasm


def canvas(h: int = 448, w: int = 448) -> np.ndarray:
    return np.full((h, w, 3), 236, np.uint8)


def disc(img: np.ndarray, x: float, y: float, r: float, rgb: tuple[int, int, int]) -> None:
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    img[(xx - x) ** 2 + (yy - y) ** 2 <= r * r] = rgb


@pytest.mark.parametrize("mpp", [0.25, 0.5, 1.0])
def test_counts_separate_nuclei_at_any_resolution(mpp: float) -> None:
    img = canvas(int(224 / mpp), int(224 / mpp))
    centres = [(30 + 40 * i, 30 + 40 * j) for i in range(4) for j in range(4)]  # um
    for cx, cy in centres:
        disc(img, cx / mpp, cy / mpp, 4.5 / mpp, NUCLEUS_RGB)  # 9 um nucleus
    x, y, w = nuclei_centres(img, mpp)
    assert w.sum() == len(centres)
    found = np.stack([x, y], axis=1) * mpp
    for c in centres:  # every centre found within 3 um
        assert np.hypot(*(found - np.array(c)).T).min() < 3.0


def test_ignores_cytoplasm_specks_and_glass() -> None:
    img = canvas()
    disc(img, 100, 100, 40, CYTOPLASM_RGB)  # a big pale cell body
    disc(img, 300, 300, 2, NUCLEUS_RGB)  # a 2 um speck (bacterium, debris)
    x, _, w = nuclei_centres(img, 0.5)
    assert w.sum() == 0 and x.size == 0


def test_a_cluster_counts_by_area() -> None:
    img = canvas()
    for i in range(5):  # five touching 9 um nuclei merge into one dark blob
        disc(img, 150 + 14 * i, 200, 9, NUCLEUS_RGB)
    _, _, w = nuclei_centres(img, 0.5)
    assert len(w) == 1 and 3 <= w[0] <= 7


def test_each_nucleus_counted_once_per_patch_grid() -> None:
    img = canvas(448, 672)
    disc(img, 100, 100, 9, NUCLEUS_RGB)  # patch (0, 0)
    disc(img, 330, 300, 9, NUCLEUS_RGB)  # patch (224, 224)
    disc(img, 500, 120, 9, NUCLEUS_RGB)  # patch (448, 0)
    offsets = np.array([[0, 0], [224, 0], [448, 0], [0, 224], [224, 224], [448, 224]])
    counts = count_per_patch(img, 0.5, offsets, 224)
    assert counts.tolist() == [1, 0, 1, 0, 1, 0]
    # overlapping patches (stride 112): each nucleus still counted once in total
    offsets = np.array([[x, y] for y in range(0, 225, 112) for x in range(0, 449, 112)])
    counts = count_per_patch(img, 0.5, offsets, 224, stride_px=112)
    assert counts.sum() == 3
