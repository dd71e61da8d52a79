"""Field-level QA against cell truth: do the top-ranked fields show a true abnormal cell?

Pure maths: fields are level-0 boxes ``[x0, x1) x [y0, y1)`` in rank order; an abnormal cell
counts as shown by a field when its nucleus point ``(x, y)`` lies in the box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from cytoscreen.stats import Proportion, proportion

TOP_N = (1, 3, 5, 10)

Box = tuple[int, int, int, int]  # x0, y0, x1, y1


def first_hit_rank(fields: Sequence[Box], abnormal_xy: ArrayLike) -> int | None:
    """1-based rank of the first field holding an abnormal cell's nucleus; None if none does."""
    pts = np.asarray(abnormal_xy, dtype=np.float64).reshape(-1, 2)
    if pts.size == 0:
        return None
    x, y = pts[:, 0], pts[:, 1]
    for rank, (x0, y0, x1, y1) in enumerate(fields, start=1):
        if np.any((x >= x0) & (x < x1) & (y >= y0) & (y < y1)):
            return rank
    return None


@dataclass(frozen=True)
class FieldHits:
    n_slides: int  # slides with at least one abnormal cell in their truth
    hit_at: dict[int, Proportion]  # N -> slides whose top-N fields show an abnormal cell
    never_hit: int  # slides where no listed field shows one


def field_hits(
    first_hits: Sequence[int | None], top_n: Sequence[int] = TOP_N, confidence: float = 0.95
) -> FieldHits | None:
    """Hit rates at N from each slide's :func:`first_hit_rank`; None when no slide qualifies."""
    if not first_hits:
        return None
    n = len(first_hits)
    hits = {
        k: proportion(sum(1 for r in first_hits if r is not None and r <= k), n, confidence)
        for k in top_n
    }
    return FieldHits(n_slides=n, hit_at=hits, never_hit=sum(r is None for r in first_hits))
