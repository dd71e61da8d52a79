"""Block reads: decoding only the tiles under a block's patches changes no patch pixel and no
nucleus count, whether or not the level read is resampled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from cytoscreen.io import open_slide
from cytoscreen.io.base import SlideReader
from cytoscreen.tiling import blocks
from cytoscreen.tiling.blocks import SlideSource, patch_windows, read_block


class FullReads:
    """A reader that hides the direct tile path, so every block is read whole."""

    def __init__(self, inner: SlideReader) -> None:
        self.inner, self.meta = inner, inner.meta

    def read_region(self, *args: Any) -> Any:
        return self.inner.read_region(*args)


def l_shaped_block(size_l0: float) -> npt.NDArray[np.int64]:
    """Patches on the top row and left column of a 4 x 4 cell square: its bounding box holds
    tiles under no patch."""
    cells = [(i, 0) for i in range(4)] + [(0, j) for j in range(1, 4)]
    return np.array([(int(800 + i * size_l0), int(600 + j * size_l0)) for i, j in cells])


@pytest.mark.parametrize(("target_mpp", "patch_px"), [(0.5, 64), (0.4, 48), (0.25, 40), (0.2, 32)])
def test_sparse_block_read_equals_a_full_read(
    cells_slide: tuple[Path, npt.NDArray[np.int64]],
    monkeypatch: pytest.MonkeyPatch,
    target_mpp: float,
    patch_px: int,
) -> None:
    path, centres = cells_slide
    source = SlideSource(
        path=str(path),
        backend="tiffslide",
        mpp_override=None,
        target_mpp=target_mpp,
        patch_px=patch_px,
        tolerance=0.02,
    )
    coords = l_shaped_block(patch_px * target_mpp / 0.25)
    coords = np.vstack([coords, centres[:3] - 10])  # and some stained cells
    sparse = read_block(source, coords)
    blocks.close_readers()
    real = blocks.reader_for
    monkeypatch.setattr(blocks, "reader_for", lambda s: FullReads(real(s)))
    full = read_block(source, coords)
    blocks.close_readers()
    assert sparse[1].all() and full[1].all()
    for a, b in zip(sparse[0], full[0], strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(sparse[2], full[2])


def test_sparse_reads_skip_tiles_under_no_patch(
    cells_slide: tuple[Path, npt.NDArray[np.int64]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cytoscreen.io.tiles import TiledPage

    path, _ = cells_slide
    source = SlideSource(str(path), "tiffslide", None, 0.5, 128, 0.02)
    coords = l_shaped_block(256.0)  # 128 px patches at level 1: a 512 px square box
    decoded: list[int] = []
    tile = TiledPage.tile
    monkeypatch.setattr(TiledPage, "tile", lambda self, i: (decoded.append(i), tile(self, i))[1])
    read_block(source, coords)
    blocks.close_readers()
    sparse = list(decoded)
    decoded.clear()
    with open_slide(path, backend="tiffslide") as reader:
        reader.read_region((800, 600), 1, (512, 512))  # the whole bounding box
    assert len(set(sparse)) == len(sparse)  # each tile decoded once
    assert set(sparse) < set(decoded)  # and only some of the box's tiles


def test_patch_windows_cover_the_resampling_support() -> None:
    offsets = np.array([[0, 0], [100, 50]])
    assert patch_windows(offsets, 64, 1.0) == [(0, 0, 64, 64), (100, 50, 64, 64)]
    (x, y, w, h), _ = patch_windows(offsets, 64, 2.0)
    assert x <= -6 and y <= -6 and x + w >= 128 + 6 and y + h >= 128 + 6
