"""Patch grid maths: pure numpy, no slide access.

A patch is ``patch_px`` pixels at ``target_mpp``; on level 0 of a slide scanned at ``slide_mpp``
it covers ``size_l0 = patch_px * target_mpp / slide_mpp`` pixels (a float). Patches are laid
out every ``stride_l0`` level-0 pixels, scored for foreground on a low-resolution mask, kept
above a minimum fraction, and grouped into square read blocks whose patches are contiguous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cytoscreen.types import PatchGrid

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
SumTable = npt.NDArray[np.float64 | np.int32]  # summed-area table of a mask


def patch_geometry(
    slide_mpp: float, target_mpp: float, patch_px: int, overlap_px: int = 0
) -> tuple[float, float]:
    """Level-0 (size, stride) of a patch of ``patch_px`` at ``target_mpp`` with ``overlap_px``."""
    if not (slide_mpp > 0 and target_mpp > 0 and math.isfinite(slide_mpp * target_mpp)):
        raise ValueError(f"resolutions must be positive, got {slide_mpp=} {target_mpp=}")
    if patch_px < 1:
        raise ValueError(f"patch_px must be >= 1, got {patch_px}")
    if not (0 <= overlap_px < patch_px):
        raise ValueError(f"overlap must be in [0, {patch_px}), got {overlap_px}")
    scale = target_mpp / slide_mpp
    return patch_px * scale, (patch_px - overlap_px) * scale


def grid_positions(length: int, size: float, stride: float) -> IntArray:
    """Level-0 start positions along one axis so that patches cover ``[0, length)``.

    The last patch may run past the edge (readers return white there). An empty axis gives no
    positions.
    """
    if length <= 0:
        return np.zeros(0, dtype=np.int64)
    n = max(1, math.ceil((length - size) / stride - 1e-9) + 1)
    pos = np.floor(np.arange(n + 1, dtype=np.float64) * stride + 1e-9).astype(np.int64)
    # flooring to whole pixels can leave the last pixel uncovered: then one more patch
    return pos if pos[n - 1] + size < length else pos[:n]


def grid_indices(width: int, height: int, size: float, stride: float) -> tuple[IntArray, IntArray]:
    """(ix, iy) grid indices of every patch position, row-major."""
    nx = len(grid_positions(width, size, stride))
    ny = len(grid_positions(height, size, stride))
    iy, ix = np.divmod(np.arange(nx * ny, dtype=np.int64), nx)
    return ix, iy


def _integral(mask: npt.NDArray[np.generic]) -> SumTable:
    """Summed-area table with a leading row/column of zeros: ``S[y, x] = sum(mask[:y, :x])``.

    A boolean mask is summed in int32 (exact, and half the memory traffic of float64; every
    count is exactly representable when interpolated in float64); a fractional one in float64.
    """
    m = np.asarray(mask)
    dtype = np.int32 if m.dtype == np.bool_ and m.size < 2**31 else np.float64
    out = np.zeros((m.shape[0] + 1, m.shape[1] + 1), dtype=dtype)
    np.cumsum(m, axis=0, dtype=dtype, out=out[1:, 1:])
    np.cumsum(out[1:, 1:], axis=1, out=out[1:, 1:])
    return out


def _integral_at(sat: SumTable, x: FloatArray, y: FloatArray) -> FloatArray:
    """Exact area integral of a piecewise-constant mask over ``[0, x) x [0, y)`` (mask units).

    The integral of a piecewise-constant image is bilinear inside each cell, so bilinear
    interpolation of the summed-area table is exact for fractional corners.
    """
    h, w = sat.shape[0] - 1, sat.shape[1] - 1
    x = np.clip(x, 0.0, float(w))
    y = np.clip(y, 0.0, float(h))
    x0 = np.minimum(np.floor(x).astype(np.int64), max(w - 1, 0))
    y0 = np.minimum(np.floor(y).astype(np.int64), max(h - 1, 0))
    x1 = np.minimum(x0 + 1, w)
    y1 = np.minimum(y0 + 1, h)
    fx = x - x0
    fy = y - y0
    top = sat[y0, x0] * (1 - fx) + sat[y0, x1] * fx
    bot = sat[y1, x0] * (1 - fx) + sat[y1, x1] * fx
    return np.asarray(top * (1 - fy) + bot * fy, dtype=np.float64)


def foreground_fraction(
    mask: npt.NDArray[np.generic], mask_scale: float, coords: IntArray, size_l0: float
) -> npt.NDArray[np.float32]:
    """Share of each patch's area that is foreground in ``mask``.

    ``mask`` is a low-resolution boolean (or fractional, 0..1) image whose pixel ``(i, j)``
    covers level-0 ``[j*mask_scale, (j+1)*mask_scale) x [i*mask_scale, (i+1)*mask_scale)``.
    Area outside the mask counts as background; the denominator is the whole patch.
    """
    if mask_scale <= 0:
        raise ValueError(f"mask_scale must be positive, got {mask_scale}")
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    if coords.shape[0] == 0 or mask.size == 0:
        return np.zeros(coords.shape[0], dtype=np.float32)
    sat = _integral(mask)
    x0 = coords[:, 0] / mask_scale
    y0 = coords[:, 1] / mask_scale
    x1 = x0 + size_l0 / mask_scale
    y1 = y0 + size_l0 / mask_scale
    area = (
        _integral_at(sat, x1, y1)
        - _integral_at(sat, x0, y1)
        - _integral_at(sat, x1, y0)
        + _integral_at(sat, x0, y0)
    )
    frac = area / (size_l0 / mask_scale) ** 2
    return np.clip(frac, 0.0, 1.0).astype(np.float32)


def select(foreground: npt.NDArray[np.float32], min_fraction: float) -> BoolArray:
    """Patches to keep: at least ``min_fraction`` foreground, and never a patch with none."""
    fg = np.asarray(foreground)
    return np.asarray((fg >= min_fraction) & (fg > 0.0), dtype=np.bool_)


def block_order(ix: IntArray, iy: IntArray, block_patches: int) -> tuple[IntArray, IntArray]:
    """Block-major order of patches and each patch's block id (in that order).

    Blocks are ``block_patches x block_patches`` cells of the patch grid; they are numbered
    0..B-1 in row-major order of the blocks that hold at least one patch, and within a block
    patches stay row-major. Returns ``(order, block_ids)`` with ``block_ids`` non-decreasing.
    """
    if block_patches < 1:
        raise ValueError(f"block_patches must be >= 1, got {block_patches}")
    ix = np.asarray(ix, dtype=np.int64)
    iy = np.asarray(iy, dtype=np.int64)
    if ix.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    bx, by = ix // block_patches, iy // block_patches
    order = np.lexsort((ix, iy, bx, by)).astype(np.int64)
    key = by[order] * (int(bx.max()) + 1) + bx[order]
    _, block_ids = np.unique(key, return_inverse=True)
    return order, block_ids.astype(np.int64).reshape(-1)


def block_ranges(block_ids: IntArray) -> list[tuple[int, int]]:
    """``[start, stop)`` index range of each block (block ids must be sorted)."""
    ids = np.asarray(block_ids, dtype=np.int64)
    if ids.size == 0:
        return []
    if np.any(np.diff(ids) < 0):
        raise ValueError("block_ids must be sorted (patches in block-major order)")
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    stops = np.r_[starts[1:], ids.size]
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


@dataclass(frozen=True)
class GridSpec:
    """What fixes a grid: slide size and resolution plus the tiling parameters."""

    width: int
    height: int
    slide_mpp: float
    target_mpp: float
    patch_px: int
    overlap_px: int = 0
    block_patches: int = 8
    min_fraction: float = 0.005


def build_grid(spec: GridSpec, mask: npt.NDArray[np.generic], mask_scale: float) -> PatchGrid:
    """All patches of a slide above ``min_fraction`` foreground, in block-major order."""
    size, stride = patch_geometry(spec.slide_mpp, spec.target_mpp, spec.patch_px, spec.overlap_px)
    xs = grid_positions(spec.width, size, stride)
    ys = grid_positions(spec.height, size, stride)
    ix, iy = grid_indices(spec.width, spec.height, size, stride)
    coords = np.stack([xs[ix], ys[iy]], axis=1).astype(np.int64).reshape(-1, 2)
    fg = foreground_fraction(mask, mask_scale, coords, size)
    keep = select(fg, spec.min_fraction)
    order, block_ids = block_order(ix[keep], iy[keep], spec.block_patches)
    return PatchGrid(
        coords=np.ascontiguousarray(coords[keep][order]).reshape(-1, 2),
        foreground=np.ascontiguousarray(fg[keep][order]).astype(np.float32),
        patch_px=spec.patch_px,
        target_mpp=spec.target_mpp,
        size_l0=size,
        stride_l0=stride,
        block_ids=block_ids,
    )
