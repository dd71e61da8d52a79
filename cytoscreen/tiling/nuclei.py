"""Cellularity: count the nuclei of squamous cells in a block of pixels (pure numpy).

The tiler calls ``count_per_patch`` on every block canvas it reads (0.5 um/px), so counting
has to cost a small share of tiling: the canvas is sampled every ``WORK_MPP`` (2 um), a few
passes over those samples find the candidates, and the tests run on candidate points only.

1. **Darkness.** Each sample's optical density in its least absorbed channel, against the
   block's own glass (the 99th percentile of the samples). Nuclei absorb in all three
   channels; Pap-stained cytoplasm (orange, pink or blue-green) transmits at least one, so
   cytoplasm stays pale in this signal where its total density rivals a nucleus'.
2. **Candidates.** Local maxima of the darkness smoothed over 3 x 3 samples (6 um), above
   ``FLOOR_OD``; a maximum is dropped when a darker sample 4 um away is joined to it without
   a dip (``SADDLE``: one nucleus, not two).
3. **Thresholds from the block itself.** The block's nuclear level is the median peak of its
   clearly contrasted candidates; thresholds scale with it (``stain_scale``), so a pale or
   blurred slide is judged against its own nuclei, and a strongly stained one too (up to 1.3x
   the stain-1 thresholds).
4. **Nucleus tests.** A candidate is a nucleus when its peak reaches ``MIN_PEAK``, stands
   ``MIN_CONTRAST`` above the lightest sample 6 um around it and at least ``1 / MAX_RING_RATIO``
   times it (a nucleus on its cytoplasm, not a fold of cytoplasm), and the ring 10 um around
   it is stained (``MIN_CYTOPLASM``: a squamous nucleus sits in its cytoplasm). The smoothing
   over 6 um and the cytoplasm test keep inflammatory cells (3-5 um dense nuclei, scant
   cytoplasm), bacteria and debris on glass out of the count.
5. **Crowding.** Where cells overlap (dense conventional smears) nuclei hide behind each other
   and merge. Each patch's count is scaled by ``1 + CROWDING * L``, where ``L = -ln(1 - c)``
   is the mean number of cell layers over the patch under random overlap (``c``: the share of
   its samples that are stained, capped at ``MAX_COVER``). Sparse liquid-based patches are
   barely changed (``c ~ 0.1-0.3``).

The constants were chosen on generated slides of the training fields and are measured on the
held-out fields by ``scripts/bench_cellularity.py`` (docs/cellularity.md).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

WORK_MPP = 2.0  # um/px at which nuclei are counted (a 5 um nucleus is still 2-3 samples wide)
SADDLE = 0.75  # a darker sample 4 um away with no dip below SADDLE x the peak: same nucleus
MIN_PEAK = 0.32  # x stain_scale: smoothed darkest-channel density of a nucleus
MIN_CONTRAST = 0.1  # x stain_scale: above the lightest sample 6 um around it
MAX_RING_RATIO = 0.7  # lightest sample 6 um around it / peak: at most this
MIN_CYTOPLASM = 0.02  # x stain_scale: median density 10 um around it (its cytoplasm)
NUCLEAR_LEVEL = 0.5  # median peak of clear nuclei on a stain-1 slide (sets stain_scale)
STAIN_SCALE_RANGE = (0.5, 1.3)  # a strong stain is judged more strictly too, a pale one less
FLOOR_OD = STAIN_SCALE_RANGE[0] * MIN_PEAK  # no candidate below this can pass MIN_PEAK
MIN_NUCLEI_FOR_SCALE = 10  # fewer clear candidates in a block: stain_scale 1
STAINED_OD = 0.05  # a sample is stained (crowding) at this density
CROWDING = 0.4  # count x (1 + CROWDING x cell layers)
MAX_COVER = 0.95
_GLASS_FLOOR = 200.0  # never normalise against a glass darker than this
_GLASS_PERCENTILE = 0.99


def _ring(radius: float, n: int) -> tuple[I64, I64]:
    angle = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    dy = np.round(radius * np.sin(angle)).astype(np.int64)
    dx = np.round(radius * np.cos(angle)).astype(np.int64)
    return dy, dx


_OUTER = np.array(
    [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if max(abs(dy), abs(dx)) == 2],
    np.int64,
)
_MIDWAY = np.round(_OUTER / 2.0).astype(np.int64)  # the sample between a peak and _OUTER
_RING_6UM = _ring(3, 16)  # in samples of WORK_MPP
_RING_10UM = _ring(5, 24)


def darkness(rgb: npt.NDArray[np.uint8], step: int) -> F32:
    """Optical density of the least absorbed channel of every ``step``-th pixel, against the
    glass of the samples (99th percentile of their brightest channel; pure white, the unread
    corners of a block, ignored)."""
    sub = rgb[::step, ::step]
    bright = np.maximum(np.maximum(sub[..., 0], sub[..., 1]), sub[..., 2])
    counts = np.bincount(bright.ravel(), minlength=256)
    counts[255] = 0
    total = int(counts.sum())
    glass = 240.0
    if total:
        glass = float(np.searchsorted(np.cumsum(counts), _GLASS_PERCENTILE * total))
    glass = max(glass, _GLASS_FLOOR)
    levels = np.maximum(np.arange(256, dtype=np.float32), 1.0)
    lut = np.clip(-np.log10(levels / np.float32(glass)), 0.0, 3.0).astype(np.float32)
    return np.take(lut, bright)  # (a third of the time of lut[bright])


def box3(a: F32) -> F32:
    """Mean over each sample's 3 x 3 neighbourhood (edges repeated), as two 3-sample sums."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    rows = p[:, 0:w] + p[:, 1 : w + 1] + p[:, 2 : w + 2]
    out = rows[0:h] + rows[1 : h + 1] + rows[2 : h + 2]
    out *= np.float32(1.0 / 9.0)
    return np.asarray(out, np.float32)


def local_maxima(s: F32, floor: float) -> tuple[I64, I64]:
    """(rows, cols) of samples at least ``floor`` and not below any of their 8 neighbours; of
    equal neighbouring maxima (a plateau) only those with no equal maximum before them in
    raster order are kept."""
    h, w = s.shape
    p = np.pad(s, 1, mode="constant", constant_values=-1.0)
    rows = np.maximum(np.maximum(p[:, 0:w], p[:, 1 : w + 1]), p[:, 2 : w + 2])
    around = np.maximum(np.maximum(rows[0:h], rows[1 : h + 1]), rows[2 : h + 2])
    peak = (s >= around) & (s >= floor)
    ys, xs = np.nonzero(peak)
    if ys.size:
        pp = np.pad(peak, 1)
        value = s[ys, xs]
        first = np.ones(ys.size, bool)
        for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
            ny, nx = ys + dy, xs + dx
            tie = pp[ny + 1, nx + 1]
            tie[tie] = s[ny[tie], nx[tie]] == value[tie]
            first &= ~tie
        ys, xs = ys[first], xs[first]
    return ys.astype(np.int64), xs.astype(np.int64)


def _at(a: F32, ys: I64, xs: I64, dy: I64, dx: I64) -> F32:
    """``a`` at each point shifted by each offset: (points, offsets), clipped to the array."""
    h, w = a.shape
    return a[np.clip(ys[:, None] + dy, 0, h - 1), np.clip(xs[:, None] + dx, 0, w - 1)]


def _row_medians(a: F32) -> F32:
    """np.median(a, axis=1) at half its cost (one partition, no general machinery)."""
    n = a.shape[1]
    lo, hi = (n - 1) // 2, n // 2
    part = np.partition(a, (lo, hi), axis=1)
    return np.asarray((part[:, lo] + part[:, hi]) * np.float32(0.5), np.float32)


def stain_scale(peaks: F32, contrast: F32) -> float:
    """The block's nuclear level relative to a stain-1 slide, from its clear candidates."""
    clear = peaks[contrast >= MIN_CONTRAST]
    if clear.size < MIN_NUCLEI_FOR_SCALE:
        return 1.0
    return float(np.clip(np.median(clear) / NUCLEAR_LEVEL, *STAIN_SCALE_RANGE))


def detect(d: F32) -> tuple[I64, I64]:
    """(rows, cols) in ``d``'s samples of the squamous nuclei found (module docstring)."""
    s = box3(d)
    ys, xs = local_maxima(s, FLOOR_OD)
    if ys.size == 0:
        return ys, xs
    peak = s[ys, xs]
    far = _at(s, ys, xs, _OUTER[:, 0], _OUTER[:, 1])
    mid = _at(s, ys, xs, _MIDWAY[:, 0], _MIDWAY[:, 1])
    joined = ((far > peak[:, None]) & (mid >= SADDLE * peak[:, None])).any(axis=1)
    ys, xs, peak = ys[~joined], xs[~joined], peak[~joined]
    if ys.size == 0:
        return ys, xs
    ring = _at(d, ys, xs, *_RING_6UM).min(axis=1)
    cytoplasm = _row_medians(_at(d, ys, xs, *_RING_10UM))
    contrast = peak - ring
    k = stain_scale(peak, contrast)
    ok = (
        (peak >= k * MIN_PEAK)
        & (contrast >= k * MIN_CONTRAST)
        & (ring <= MAX_RING_RATIO * peak)
        & (cytoplasm >= k * MIN_CYTOPLASM)
    )
    return ys[ok], xs[ok]


def cell_layers(stained: npt.NDArray[np.bool_], boxes: I64) -> npt.NDArray[np.float64]:
    """Mean number of overlapping cell layers in each (y0, y1, x0, x1) box of samples:
    ``-ln(1 - c)`` with ``c`` the stained share of the box (random overlap)."""
    cover = np.zeros(len(boxes), np.float64)
    for i, (y0, y1, x0, x1) in enumerate(boxes.tolist()):
        area = (y1 - y0) * (x1 - x0)
        if area > 0:
            cover[i] = np.count_nonzero(stained[y0:y1, x0:x1]) / area
    return np.asarray(-np.log1p(-np.minimum(cover, MAX_COVER)), np.float64)


def nuclei_centres(
    rgb: npt.NDArray[np.uint8], mpp: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(x, y) of the squamous nuclei found in ``rgb`` (``mpp`` um/px), in its pixels."""
    step = max(1, int(round(WORK_MPP / mpp)))
    ys, xs = detect(darkness(rgb, step))
    x = np.asarray(xs * float(step) + 0.5, np.float64)
    return x, np.asarray(ys * float(step) + 0.5, np.float64)


def count_per_patch(
    rgb: npt.NDArray[np.uint8],
    mpp: float,
    offsets: npt.NDArray[np.int64],
    patch_px: int,
    stride_px: int | None = None,
) -> npt.NDArray[np.int32]:
    """Squamous nuclei in each patch of a block canvas (patches at ``offsets``, (x, y) in
    canvas px), corrected for crowding.

    A nucleus is counted once, in the patch whose stride cell holds its centre (so overlapping
    patches do not count it twice); the crowding of that stride cell scales its count.
    """
    out = np.zeros(len(offsets), np.int32)
    if len(offsets) == 0:
        return out
    step = max(1, int(round(WORK_MPP / mpp)))
    d = darkness(rgb, step)
    ys, xs = detect(d)
    if ys.size == 0:
        return out
    cell = stride_px if stride_px is not None else patch_px
    off = np.asarray(offsets, np.int64).reshape(-1, 2)
    x, y = xs * step, ys * step
    ox, oy = off[:, 0][:, None], off[:, 1][:, None]
    found = ((x >= ox) & (x < ox + cell) & (y >= oy) & (y < oy + cell)).sum(axis=1)
    h, w = d.shape
    boxes = np.stack(
        [
            np.clip(off[:, 1] // step, 0, h),
            np.clip(-(-(off[:, 1] + cell) // step), 0, h),
            np.clip(off[:, 0] // step, 0, w),
            np.clip(-(-(off[:, 0] + cell) // step), 0, w),
        ],
        axis=1,
    )
    layers = cell_layers(d >= STAINED_OD, boxes)
    out[:] = np.round(found * (1.0 + CROWDING * layers)).astype(np.int32)
    return out
