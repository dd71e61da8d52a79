"""Strata a labelled slide set is reported by: how many abnormal cells a positive slide holds.

One abnormal cell among thousands is the case that matters for screening, so calibration and
QA report sensitivity for 1, 2-3, 4-10 and more abnormal cells apart, and the generator draws
positive slides evenly over these strata.
"""

from __future__ import annotations

ABNORMAL_STRATA: tuple[tuple[int, int], ...] = ((1, 1), (2, 3), (4, 10), (11, 200))


def abnormal_stratum(n: int) -> str:
    """The label of the stratum holding ``n`` abnormal cells, e.g. ``2-3``."""
    for lo, hi in ABNORMAL_STRATA:
        if lo <= n <= hi:
            return str(lo) if lo == hi else f"{lo}-{hi}"
    return f">{ABNORMAL_STRATA[-1][1]}" if n > 0 else "0"
