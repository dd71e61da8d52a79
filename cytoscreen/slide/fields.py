"""Ranked suspicious fields: touching high-scoring patches merged into level-0 boxes.

Patches scoring at least ``min_score`` are linked when their squares overlap or touch (a gap of
up to ``merge_gap_px`` level-0 pixels still counts, which absorbs the rounding of coordinates);
each connected component is one field. Diagonal neighbours touch at a corner, so they merge.
A field's score is its best patch's; fields are ranked by score, ties by lowest patch index.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from cytoscreen.slide.settings import FieldSettings
from cytoscreen.types import SuspiciousField


def find_fields(
    prob: npt.ArrayLike,
    coords: npt.ArrayLike,
    size_l0: float,
    settings: FieldSettings | None = None,
) -> tuple[SuspiciousField, ...]:
    """The ``settings.max_fields`` best fields, rank 1 first; NaN patches never take part."""
    settings = settings or FieldSettings()
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if xy.shape[0] != p.size:
        raise ValueError(f"{p.size} probabilities but {xy.shape[0]} patch coordinates")
    if not size_l0 > 0:
        raise ValueError(f"size_l0 must be positive, got {size_l0}")
    with np.errstate(invalid="ignore"):
        idx = np.flatnonzero(p >= settings.min_score)  # NaN compares False
    if idx.size == 0:
        return ()
    # Two squares of side s overlap or touch when both |dx| and |dy| <= s (Chebyshev distance).
    pairs = cKDTree(xy[idx]).query_pairs(
        r=size_l0 + settings.merge_gap_px, p=math.inf, output_type="ndarray"
    )
    n = idx.size
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=False)
    # Group members by component (stable: ascending patch index inside each component).
    order = np.argsort(comp, kind="stable")
    groups = np.split(idx[order], np.cumsum(np.bincount(comp, minlength=n_comp))[:-1])
    best = np.array([g[np.argmax(p[g])] for g in groups])  # argmax: lowest index on ties
    ranked = np.lexsort((best, -p[best]))[: settings.max_fields]
    fields = []
    for c in ranked:
        box = xy[groups[c]]
        fields.append(
            (
                float(p[best[c]]),
                int(math.floor(box[:, 0].min())),
                int(math.floor(box[:, 1].min())),
                int(math.ceil(box[:, 0].max() + size_l0)),
                int(math.ceil(box[:, 1].max() + size_l0)),
                tuple(int(m) for m in groups[c]),
            )
        )
    return tuple(
        SuspiciousField(rank=r, score=sc, x0=x0, y0=y0, x1=x1, y1=y1, patch_indices=members)
        for r, (sc, x0, y0, x1, y1, members) in enumerate(fields, start=1)
    )
