"""Cellularity: count nucleus-like objects in a block of pixels (pure numpy/scipy).

Pap-stained nuclei are the darkest, bluish objects on a slide. At about 1 um/px they are dark
blobs of roughly 15-150 um^2; a larger dark blob is a cluster whose nuclei are estimated by
area. The count is an estimate of cellularity (squamous and other nucleated cells alike), used
for the adequacy rule, not a cell census.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

WORK_MPP = 2.0  # um/px at which nuclei are counted (a nucleus is still >= 4 px across)
NUCLEUS_OD = 0.35  # mean optical density of nuclear chromatin (per channel)
MIN_AREA_UM2 = 12.0  # smaller dark specks are debris or bacteria
CLUSTER_AREA_UM2 = 150.0  # a blob larger than this is several nuclei
NUCLEUS_AREA_UM2 = 60.0  # typical nucleus area used to split clusters
# mean OD of (r, g, b) > NUCLEUS_OD  <=>  (r+1)(g+1)(b+1) < 256^3 * 10^(-3 * NUCLEUS_OD)
_MAX_PRODUCT = int(256.0**3 * 10.0 ** (-3.0 * NUCLEUS_OD))


_CROSS = ndi.generate_binary_structure(2, 1)  # ndi.label's default connectivity, built once


def nuclei_centres(
    rgb: npt.NDArray[np.uint8], mpp: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(x, y, weight) of nucleus-like blobs, in the input's pixel coordinates.

    ``weight`` is the estimated number of nuclei in each blob (1 for single nuclei). The image
    is sampled every ``WORK_MPP / mpp`` pixels (no filtering: nuclei stay several samples wide).
    """
    step = max(1, int(round(WORK_MPP / mpp)))
    sub = rgb[::step, ::step]
    r, g, b = (sub[..., i].astype(np.int32) for i in range(3))
    dark = ((r + 1) * (g + 1) * (b + 1) < _MAX_PRODUCT) & (b >= r - 10)
    labels, n = ndi.label(dark, _CROSS)
    empty = np.zeros(0)
    if n == 0:
        return empty, empty, empty
    flat = labels.ravel()
    where = np.flatnonzero(flat)  # only the dark pixels carry weight
    lab = flat[where]
    rows, cols = np.divmod(where, labels.shape[1])
    area = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    cx = np.bincount(lab, weights=cols, minlength=n + 1)[1:] / area
    cy = np.bincount(lab, weights=rows, minlength=n + 1)[1:] / area
    area_um2 = area * (mpp * step) ** 2
    keep = area_um2 >= MIN_AREA_UM2
    weight = np.where(area_um2 > CLUSTER_AREA_UM2, np.round(area_um2 / NUCLEUS_AREA_UM2), 1.0)
    return (cx[keep] + 0.5) * step, (cy[keep] + 0.5) * step, weight[keep]


def count_per_patch(
    rgb: npt.NDArray[np.uint8],
    mpp: float,
    offsets: npt.NDArray[np.int64],
    patch_px: int,
    stride_px: int | None = None,
) -> npt.NDArray[np.int32]:
    """Nuclei in each patch of a block canvas (patches at ``offsets``, (x, y) in canvas px).

    A nucleus is counted once, in the patch whose stride cell holds its centre (so overlapping
    patches do not count it twice).
    """
    x, y, w = nuclei_centres(rgb, mpp)
    out = np.zeros(len(offsets), np.int32)
    if x.size == 0 or len(offsets) == 0:
        return out
    step = stride_px if stride_px is not None else patch_px
    ox = np.asarray(offsets)[:, 0][:, None]
    oy = np.asarray(offsets)[:, 1][:, None]
    inside = (x >= ox) & (x < ox + step) & (y >= oy) & (y < oy + step)
    out[:] = (inside * w).sum(axis=1).round().astype(np.int32)
    return out
