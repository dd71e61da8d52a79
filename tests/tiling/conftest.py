"""Small cytology-like slides for the tiler tests, written once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cytoscreen.config import Config, load_config

CELL_RGB = (150, 100, 170)


def sparse_cells(
    width: int, height: int, n_cells: int, seed: int = 0, cell_px: int = 60
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Noisy pale glass with ``n_cells`` stained squares; returns (image, cell centres (x, y))."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 238, np.uint8)
    img += rng.integers(0, 8, img.shape, dtype=np.uint8)
    xs = rng.integers(cell_px, width - 2 * cell_px, n_cells)
    ys = rng.integers(cell_px, height - 2 * cell_px, n_cells)
    for x, y in zip(xs, ys, strict=True):
        img[y : y + cell_px, x : x + cell_px] = CELL_RGB
    centres = np.stack([xs + cell_px // 2, ys + cell_px // 2], axis=1).astype(np.int64)
    return img, centres


@pytest.fixture(scope="session")
def cells_slide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, npt.NDArray[np.int64]]:
    """4000 x 3000 px at 0.25 um/px, 2x pyramid, 25 cells."""
    from cytoscreen.synth.tiffwriter import write_array_tiff

    img, centres = sparse_cells(4000, 3000, 25, seed=1)
    path = tmp_path_factory.mktemp("tiling") / "cells.tif"
    write_array_tiff(path, img, mpp=0.25)
    return path, centres


@pytest.fixture(scope="session")
def blank_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cytoscreen.synth.tiffwriter import write_array_tiff

    rng = np.random.default_rng(5)
    img = (236 + rng.integers(0, 10, (2000, 2500, 3))).astype(np.uint8)
    path = tmp_path_factory.mktemp("tiling") / "blank.tif"
    write_array_tiff(path, img, mpp=0.25)
    return path


@pytest.fixture()
def small_cfg() -> Config:
    """Default config with small chunks so a small slide has several chunks and blocks, and
    patches at 0.5 um/px (a 0.25 um/px slide read at half resolution: the resampling path)."""
    return load_config(
        overrides={"cache.chunk_patches": 4, "tiling.block_patches": 2, "tiling.target_mpp": 0.5}
    )
