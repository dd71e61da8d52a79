"""Grid maths: geometry, coverage, foreground fractions, selection and block order."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cytoscreen.tiling import grid as g


@pytest.mark.parametrize(
    ("slide_mpp", "target_mpp", "patch", "overlap", "size", "stride"),
    [
        (0.25, 0.5, 224, 0, 448.0, 448.0),
        (0.5, 0.5, 224, 0, 224.0, 224.0),
        (0.25, 0.5, 224, 24, 448.0, 400.0),
        (0.2528, 0.5, 256, 0, 256 * 0.5 / 0.2528, 256 * 0.5 / 0.2528),
        (1.0, 0.5, 100, 10, 50.0, 45.0),
    ],
)
def test_patch_geometry(
    slide_mpp: float, target_mpp: float, patch: int, overlap: int, size: float, stride: float
) -> None:
    got = g.patch_geometry(slide_mpp, target_mpp, patch, overlap)
    assert got == pytest.approx((size, stride))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.0, 0.5, 224, 0), "positive"),
        ((0.25, -1.0, 224, 0), "positive"),
        ((0.25, 0.5, 0, 0), "patch_px"),
        ((0.25, 0.5, 224, 224), "overlap"),
        ((0.25, 0.5, 224, -1), "overlap"),
    ],
)
def test_patch_geometry_rejects(args: tuple[float, float, int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        g.patch_geometry(*args)


@pytest.mark.parametrize(
    ("length", "size", "stride", "expected"),
    [
        (0, 10.0, 10.0, []),
        (5, 10.0, 10.0, [0]),
        (10, 10.0, 10.0, [0]),
        (11, 10.0, 10.0, [0, 10]),
        (30, 10.0, 10.0, [0, 10, 20]),
        (30, 10.0, 5.0, [0, 5, 10, 15, 20]),
        (31, 12.5, 12.5, [0, 12, 25]),
    ],
)
def test_grid_positions(length: int, size: float, stride: float, expected: list[int]) -> None:
    assert g.grid_positions(length, size, stride).tolist() == expected


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(1, 20000),
    size=st.floats(16.0, 2000.0),
    frac=st.floats(0.3, 1.0),
)
def test_grid_positions_cover_axis(length: int, size: float, frac: float) -> None:
    stride = size * frac
    pos = g.grid_positions(length, size, stride)
    assert pos[0] == 0
    assert np.all(np.diff(pos) > 0)
    # every pixel of the axis is inside some patch, and no patch starts past the edge
    assert pos[-1] + size >= length - 1e-6
    assert pos[-1] < length
    # gaps between starts never exceed the stride (so no uncovered strip)
    assert np.all(np.diff(pos) <= math.ceil(stride))


def test_foreground_fraction_exact_on_integer_cells() -> None:
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    mask[1:3, 1:3] = True
    coords = np.array([[0, 0], [10, 10], [20, 20], [30, 30], [0, 20]], np.int64)
    # mask_scale 10 level-0 px per mask px; patches 20 px = 2x2 mask px
    frac = g.foreground_fraction(mask, 10.0, coords, 20.0)
    assert frac.tolist() == pytest.approx([2 / 4, 4 / 4, 1 / 4, 0.0, 1 / 4])


def test_foreground_fraction_fractional_overlap() -> None:
    mask = np.zeros((2, 2), bool)
    mask[0, 0] = True  # covers level-0 [0,10) x [0,10)
    coords = np.array([[5, 5], [5, 0], [-5, -5]], np.int64)
    frac = g.foreground_fraction(mask, 10.0, coords, 10.0)
    assert frac.tolist() == pytest.approx([0.25, 0.5, 0.25])


def test_foreground_fraction_outside_mask_is_background() -> None:
    mask = np.ones((3, 3), bool)
    coords = np.array([[20, 20], [100, 100]], np.int64)
    frac = g.foreground_fraction(mask, 10.0, coords, 20.0)
    assert frac.tolist() == pytest.approx([0.25, 0.0])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 2.0, 4.0]))
def test_foreground_fraction_matches_brute_force(seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((12, 15)) > 0.6
    size = 8.0
    coords = rng.integers(-4, 60, size=(20, 2)).astype(np.int64)
    got = g.foreground_fraction(mask, scale, coords, size)
    full = np.kron(mask, np.ones((int(scale), int(scale)), bool))
    padded = np.zeros((full.shape[0] + 120, full.shape[1] + 120), bool)
    padded[20 : 20 + full.shape[0], 20 : 20 + full.shape[1]] = full
    want = [
        padded[y + 20 : y + 20 + int(size), x + 20 : x + 20 + int(size)].mean() for x, y in coords
    ]
    assert got == pytest.approx(np.array(want), abs=1e-6)


@pytest.mark.parametrize(
    ("fg", "min_fraction", "keep"),
    [
        ([0.0, 0.004, 0.005, 0.5], 0.005, [False, False, True, True]),
        ([0.0, 0.1], 0.0, [False, True]),
        ([1.0, 0.99], 1.0, [True, False]),
    ],
)
def test_select(fg: list[float], min_fraction: float, keep: list[bool]) -> None:
    assert g.select(np.array(fg, np.float32), min_fraction).tolist() == keep


@pytest.mark.parametrize("block", [1, 2, 3, 8])
@pytest.mark.parametrize(("nx", "ny"), [(1, 1), (5, 3), (7, 9)])
def test_block_order_contiguous(block: int, nx: int, ny: int) -> None:
    rng = np.random.default_rng(nx * 100 + ny * 10 + block)
    iy, ix = np.divmod(np.arange(nx * ny), nx)
    keep = rng.random(nx * ny) > 0.3
    keep[0] = True
    ix, iy = ix[keep], iy[keep]
    order, ids = g.block_order(ix, iy, block)
    assert sorted(order.tolist()) == list(range(len(ix)))
    assert np.all(np.diff(ids) >= 0)
    assert ids[0] == 0 and len(np.unique(ids)) == ids.max() + 1
    # all patches of a block share the same block cell; distinct ids, distinct cells
    cells = list(zip(ix[order] // block, iy[order] // block, strict=True))
    for (a, b), cell_id in zip(g.block_ranges(ids), range(ids.max() + 1), strict=True):
        assert len(set(cells[a:b])) == 1
        assert np.all(ids[a:b] == cell_id)
    assert len({cells[a] for a, _ in g.block_ranges(ids)}) == ids.max() + 1
    assert max(b - a for a, b in g.block_ranges(ids)) <= block * block


def test_block_order_row_major_blocks() -> None:
    ix = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    iy = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    order, ids = g.block_order(ix, iy, 2)
    assert order.tolist() == [0, 1, 4, 5, 2, 3, 6, 7]
    assert ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_block_ranges_rejects_unsorted() -> None:
    with pytest.raises(ValueError, match="sorted"):
        g.block_ranges(np.array([0, 1, 0]))


def test_build_grid_empty_mask_gives_no_patches() -> None:
    spec = g.GridSpec(width=5000, height=4000, slide_mpp=0.25, target_mpp=0.5, patch_px=224)
    grid = g.build_grid(spec, np.zeros((125, 157), bool), 32.0)
    assert len(grid) == 0 and grid.coords.shape == (0, 2) and grid.block_ids.shape == (0,)


@pytest.mark.parametrize("overlap", [0, 32])
@pytest.mark.parametrize("block", [1, 4])
def test_build_grid_keeps_patches_over_foreground(overlap: int, block: int) -> None:
    spec = g.GridSpec(
        width=6000,
        height=5000,
        slide_mpp=0.25,
        target_mpp=0.5,
        patch_px=224,
        overlap_px=overlap,
        block_patches=block,
    )
    scale = 32.0
    mask = np.zeros((157, 188), bool)
    mask[40:50, 60:75] = True  # level-0 x 1920..2400, y 1280..1600
    grid = g.build_grid(spec, mask, scale)
    assert len(grid) > 0
    assert grid.size_l0 == pytest.approx(448.0)
    x, y = grid.coords[:, 0], grid.coords[:, 1]
    assert np.all(x + grid.size_l0 > 1920) and np.all(x < 2400)
    assert np.all(y + grid.size_l0 > 1280) and np.all(y < 1600)
    # every foreground mask pixel centre lies inside some patch
    ys, xs = np.nonzero(mask)
    cx, cy = (xs + 0.5) * scale, (ys + 0.5) * scale
    inside = (
        (cx[:, None] >= x[None])
        & (cx[:, None] < x[None] + grid.size_l0)
        & (cy[:, None] >= y[None])
        & (cy[:, None] < y[None] + grid.size_l0)
    )
    assert inside.any(axis=1).all()
    assert np.all(np.diff(grid.block_ids) >= 0)
    assert grid.foreground.dtype == np.float32 and np.all(grid.foreground > 0)


def test_boolean_and_fractional_masks_give_the_same_fractions() -> None:
    # a boolean mask is summed in integers, a fractional one in float64: same numbers
    rng = np.random.default_rng(3)
    mask = rng.random((40, 50)) > 0.5
    coords = rng.integers(-10, 400, size=(200, 2)).astype(np.int64)
    as_bool = g.foreground_fraction(mask, 3.7, coords, 21.3)
    as_float = g.foreground_fraction(mask.astype(np.float64), 3.7, coords, 21.3)
    assert as_bool.any() and np.array_equal(as_bool, as_float)
