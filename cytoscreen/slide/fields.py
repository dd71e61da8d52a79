"""Ranked suspicious fields of microscope-field size, by greedy non-maximum suppression.

Only patches scoring at least ``min_score`` take part (NaN never does). Each field is seeded by
the best patch that is neither in a field yet nor suppressed; it takes the unused patches whose
squares overlap or touch the seed's (a gap of up to ``merge_gap_px`` level-0 pixels still
counts, which absorbs the rounding of coordinates), so on a plain grid a field is the seed's
3 x 3 neighbourhood at most. No further seed may lie within ``suppress_patches`` patch sides
(Chebyshev distance) of a seed. A field's score is its seed's; fields are ranked by it, ties by
lowest patch index, and ``patch_indices`` lists the seed first. Merging touching patches
transitively instead would turn a dense abnormal area into one field of hundreds of patches,
larger than any field of view. Pure numpy/scipy.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from cytoscreen.slide.settings import FieldSettings
from cytoscreen.types import SuspiciousField

SUPPRESS_PATCHES = 2.0  # no second seed within this many patch sides (Chebyshev) of a seed


def find_fields(
    prob: npt.ArrayLike,
    coords: npt.ArrayLike,
    size_l0: float,
    settings: FieldSettings | None = None,
    *,
    suppress_patches: float = SUPPRESS_PATCHES,
) -> tuple[SuspiciousField, ...]:
    """The ``settings.max_fields`` best field-of-view sized fields, rank 1 first.

    ``prob`` (N,) patch probabilities (NaN = not scored, never used), ``coords`` (N, 2) level-0
    top-left corners, ``size_l0`` the patch side in level-0 pixels.
    """
    settings = settings or FieldSettings()
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if xy.shape[0] != p.size:
        raise ValueError(f"{p.size} probabilities but {xy.shape[0]} patch coordinates")
    if not size_l0 > 0:
        raise ValueError(f"size_l0 must be positive, got {size_l0}")
    if suppress_patches < 1.0:
        raise ValueError("suppress_patches must be at least 1 (a field's own neighbourhood)")
    with np.errstate(invalid="ignore"):
        idx = np.flatnonzero(p >= settings.min_score)  # NaN compares False
    if idx.size == 0:
        return ()
    order = idx[np.lexsort((idx, -p[idx]))]  # best first, ties: lowest index
    pts = xy[order]
    from scipy.spatial import cKDTree  # here: 0.2 s of import that start-up need not wait for

    tree = cKDTree(pts)
    used = np.zeros(order.size, dtype=bool)  # member of a field
    blocked = np.zeros(order.size, dtype=bool)  # may not seed a field
    near = size_l0 + settings.merge_gap_px
    far = suppress_patches * size_l0 + settings.merge_gap_px
    fields: list[SuspiciousField] = []
    for k in range(order.size):
        if len(fields) >= settings.max_fields:
            break
        if blocked[k]:
            continue
        members = [m for m in tree.query_ball_point(pts[k], r=near, p=math.inf) if not used[m]]
        used[members] = True
        blocked[tree.query_ball_point(pts[k], r=far, p=math.inf)] = True
        box = pts[members]
        seed = int(order[k])
        fields.append(
            SuspiciousField(
                rank=0,  # set below
                # a member barred from seeding (near an earlier seed) may beat this seed
                score=float(p[order[members]].max()),
                x0=int(math.floor(box[:, 0].min())),
                y0=int(math.floor(box[:, 1].min())),
                x1=int(math.ceil(box[:, 0].max() + size_l0)),
                y1=int(math.ceil(box[:, 1].max() + size_l0)),
                patch_indices=(seed, *sorted(int(order[m]) for m in members if m != k)),
            )
        )
    # rank by the field's best patch; ties keep seed order (stable sort)
    ranked = sorted(fields, key=lambda f: -f.score)
    return tuple(replace(f, rank=i) for i, f in enumerate(ranked, start=1))
