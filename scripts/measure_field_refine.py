"""Would re-centring the best patches rank the gallery's fields better? Measured from caches.

    .venv/bin/python scripts/measure_overlap.py work/cal2/results --work work/overlap
    .venv/bin/python scripts/measure_field_refine.py work/cal2/results --overlap work/overlap

The screening grid cuts an abnormal nucleus near a patch edge in two, and its patch then
scores low (scripts/measure_cell_position.py). A cheap second look for the gallery only: take
a slide's ``K`` best grid patches, score the half-shifted windows that overlap them (the windows
``measure_overlap.py`` scored and saved), and give each grid patch the best score of itself and
the windows overlapping it. Fields are then found on those refined scores as ``screen`` finds
them (``slide.fields.find_fields``); the slide's own score, and so its decision, would stay on
the grid's calibrated scores. A window covers the grid patches it overlaps, and a field is its
seed's 3 x 3 neighbourhood, so a field seeded by a lifted patch still shows the nucleus that
lifted it.

Printed for each ``K`` (0: the grid as screened) and minimum field score: positive slides
whose top-10 fields show an abnormal nucleus (exact 95% CI), those with one abnormal cell,
and the slides gained and lost against the screened gallery with an exact sign test, on the
positives as generated and at full size (each joined, side by side, to a random adequate
negative of the set: the normal patches an adequate slide would add to the ranking).
Figures describe generated slides of the fields the results were made from.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.stats import binomtest

from cytoscreen.qa.fieldhits import first_hit_rank
from cytoscreen.qa.generated import scored_slides
from cytoscreen.slide.fields import find_fields
from cytoscreen.slide.settings import FieldSettings
from cytoscreen.stats import proportion

SHIFTS = {"x": (1, 0), "y": (0, 1), "xy": (1, 1)}  # measure_overlap.py's, in half patches
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Windows:
    """Half-shifted windows: their scores and, per window, the grid patches it overlaps."""

    scores: F64
    covers: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Slide:
    p: F64  # grid scores, NaN where none
    xy: F64  # (N, 2) level-0 top-left corners
    side: float  # patch side, level-0 pixels
    windows: Windows
    abnormal: F64  # (M, 2) abnormal nuclei, level 0


def windows_of(xy: F64, side: float, saved: dict[str, npt.NDArray[np.generic]]) -> Windows:
    """The windows of ``measure_overlap.py``'s file: for shift (dx, dy) in half patches, window
    ``k`` has the grid patch ``saved[name + "_i"][k]`` at its top-left and overlaps the grid
    patches from there to ``dx`` right and ``dy`` down."""
    cells = np.round(xy / side).astype(int)
    index = {(int(a), int(b)): i for i, (a, b) in enumerate(cells.tolist())}
    scores: list[float] = []
    covers: list[tuple[int, ...]] = []
    for name, (dx, dy) in SHIFTS.items():
        for s, i in zip(np.asarray(saved[name], float).tolist(), saved[name + "_i"], strict=True):
            a, b = cells[int(i)]
            covers.append(
                tuple(index[(a + u, b + v)] for u in range(dx + 1) for v in range(dy + 1))
            )
            scores.append(s)
    return Windows(np.asarray(scores, float), tuple(covers))


def refined(p: F64, windows: Windows, k: int) -> tuple[F64, int]:
    """Each of the ``k`` best grid patches, and every patch sharing a window with one, raised
    to the best window overlapping it; the number of windows that needed scoring."""
    q = p.copy()
    if k <= 0:
        return q, 0
    finite = np.flatnonzero(np.isfinite(p))
    top = set(finite[np.argsort(-p[finite], kind="stable")[:k]].tolist())
    used = 0
    for s, cover in zip(windows.scores.tolist(), windows.covers, strict=True):
        if not any(c in top for c in cover):
            continue
        used += 1
        for c in cover:
            if np.isfinite(q[c]) and s > q[c]:
                q[c] = s
    return q, used


def side_by_side(a: Slide, b: Slide) -> Slide:
    """``b`` placed to the right of ``a``, far enough that no field spans both."""
    shift = np.array([a.xy[:, 0].max() + 100 * a.side, 0.0])
    n = len(a.p)
    covers = a.windows.covers + tuple(tuple(i + n for i in c) for c in b.windows.covers)
    return Slide(
        np.r_[a.p, b.p],
        np.r_[a.xy, b.xy + shift],
        a.side,
        Windows(np.r_[a.windows.scores, b.windows.scores], covers),
        a.abnormal,
    )


def shown_in_top(slide: Slide, k: int, min_score: float, top_n: int = 10) -> tuple[bool, int]:
    """Whether the top ``top_n`` fields on the refined scores show an abnormal nucleus; the
    windows scored."""
    q, used = refined(slide.p, slide.windows, k)
    fields = find_fields(q, slide.xy, slide.side, FieldSettings(min_score=min_score))
    rank = first_hit_rank([(f.x0, f.y0, f.x1, f.y1) for f in fields], slide.abnormal)
    return rank is not None and rank <= top_n, used


def report(
    name: str, slides: Sequence[Slide], one: npt.NDArray[np.bool_], ks: Sequence[int]
) -> None:
    base: npt.NDArray[np.bool_] | None = None
    print(f"\n{name} ({len(slides)} positives, {int(one.sum())} with one abnormal cell)")
    print(f"{'K':>4}{'min score':>11}{'top-10 shows one':>30}{'one-cell':>10}"
          f"{'gained / lost':>15}{'sign test p':>13}{'windows':>9}")  # fmt: skip
    for k in ks:
        for min_score in (0.5, 0.2):
            got = [shown_in_top(s, k, min_score) for s in slides]
            hit = np.array([g[0] for g in got])
            base = hit if base is None else base
            gained, lost = int((hit & ~base).sum()), int((~hit & base).sum())
            pv = binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
            share = proportion(int(hit.sum()), hit.size)
            text = f"{int(hit.sum())}/{hit.size} [{share.lower:.3f}, {share.upper:.3f}]"
            print(
                f"{k:>4}{min_score:>11}{text:>30}{f'{int(hit[one].sum())}/{int(one.sum())}':>10}"
                f"{f'+{gained} / -{lost}':>15}{pv:>13.3f}{np.mean([g[1] for g in got]):>9.0f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--overlap", type=Path, help="measure_overlap.py's --work")
    ap.add_argument(
        "--grid-only",
        action="store_true",
        help="no second look: every scored slide, the grid's gallery only (needs no --overlap)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.overlap is None and not args.grid_only:
        ap.error("give --overlap (measure_overlap.py's --work) or --grid-only")
    none = Windows(np.zeros(0), ())

    positives: list[Slide] = []
    negatives: list[Slide] = []
    for s in scored_slides(args.results):
        xy = np.asarray(s.store.coords, float)
        side = float(s.store.attrs.size_l0)
        if args.grid_only:
            windows = none
        else:
            saved = args.overlap / f"{s.result.id}.npz"
            if not saved.exists():
                continue
            windows = windows_of(xy, side, dict(np.load(saved)))
        abnormal = np.array([(c.x, c.y) for c in s.truth.cells if c.abnormal], float)
        slide = Slide(s.p, xy, side, windows, abnormal.reshape(-1, 2))
        if s.truth.label == "positive":
            positives.append(slide)
        elif s.adequate_negative:
            negatives.append(slide)
    if not positives or not negatives:
        raise SystemExit(
            f"need positives and adequate negatives (with shifted windows under --overlap): "
            f"{len(positives)} and {len(negatives)}"
        )
    one = np.array([len(s.abnormal) == 1 for s in positives])
    ks = (0,) if args.grid_only else (0, 10, 20, 50)
    report("as generated", positives, one, ks)
    join = np.random.default_rng(args.seed).integers(len(negatives), size=len(positives))
    full = [side_by_side(s, negatives[j]) for s, j in zip(positives, join, strict=True)]
    report(f"full size (each beside one of {len(negatives)} adequate negatives)", full, one, ks)


if __name__ == "__main__":
    main()
