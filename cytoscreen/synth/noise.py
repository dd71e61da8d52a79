"""Procedural texture as a pure function of level-0 coordinates (any region, any level).

Value noise on a hashed integer lattice: the value at a lattice point depends only on its
coordinates and a seed, so any region of any pyramid level can be evaluated on its own and
neighbouring regions agree. Separable interpolation makes a region ``Wy @ V @ Wx.T``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def hash01(i: np.ndarray, j: np.ndarray, seed: int) -> npt.NDArray[np.float64]:
    """Uniform [0, 1) value per integer lattice point (i, j) (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        z = i.astype(np.int64).view(np.uint64) * _M1
        z ^= j.astype(np.int64).view(np.uint64) * _M2
        z ^= np.uint64(seed & 0xFFFFFFFF) * _M3 + _M1
        z ^= z >> np.uint64(30)
        z *= _M2
        z ^= z >> np.uint64(27)
        z *= _M3
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def _weights(coords: np.ndarray, spacing: float) -> tuple[np.ndarray, int]:
    u = coords / spacing
    i0 = np.floor(u).astype(np.int64)
    t = u - i0
    t = t * t * (3.0 - 2.0 * t)  # smoothstep: no creases along lattice lines
    lo = int(i0.min())
    n = int(i0.max()) - lo + 2
    w = np.zeros((coords.size, n), np.float32)
    rows = np.arange(coords.size)
    w[rows, i0 - lo] = 1.0 - t
    w[rows, i0 - lo + 1] = t
    return w, lo


def value_noise(xs: np.ndarray, ys: np.ndarray, spacing: float, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1] on the grid ``ys x xs`` (level-0 coordinates), shape (ny, nx)."""
    wx, ix = _weights(np.asarray(xs, np.float64), spacing)
    wy, iy = _weights(np.asarray(ys, np.float64), spacing)
    jj, ii = np.meshgrid(np.arange(wy.shape[1]) + iy, np.arange(wx.shape[1]) + ix, indexing="ij")
    lattice = hash01(ii, jj, seed).astype(np.float32)
    out: np.ndarray = wy @ lattice @ wx.T
    return out


def fbm(
    xs: np.ndarray,
    ys: np.ndarray,
    spacings: Sequence[float],
    seed: int,
    *,
    pixel: float = 1.0,
    gains: Sequence[float] | None = None,
) -> np.ndarray:
    """Weighted sum of octaves (normalised to [0, 1]) seen at a pixel size of ``pixel``.

    Octaves finer than two pixels average out to their mean (0.5) instead of aliasing, so the
    same field renders consistently at every pyramid level.
    """
    gains = list(gains) if gains is not None else [0.5**k for k in range(len(spacings))]
    total = np.zeros((len(ys), len(xs)), np.float32)
    for k, (s, g) in enumerate(zip(spacings, gains, strict=True)):
        vis = float(np.clip(s / pixel - 1.0, 0.0, 1.0))  # 0 below 1 px, 1 above 2 px
        if vis > 0:
            total += g * (vis * value_noise(xs, ys, s, seed + 7919 * k) + (1 - vis) * 0.5)
        else:
            total += g * 0.5
    return total / float(sum(gains))
