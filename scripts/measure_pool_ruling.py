"""How much of the slide-level failure a cytologist's ruling on a few NILM cells could remove.

    .venv/bin/python scripts/measure_pool_ruling.py work/cal2/results --remove 0 1 3 5 10 20 40

Every adequate negative of a calibration set is made of copies of the same few hundred NILM
source cells (``measure_negative_sources.py``), and a handful of them, in their clearest copies,
are what the model takes for abnormal. Whether those cells are truly NILM cannot be told here
(only a cytologist can), but what they cost can be measured: for each K, the K NILM source
cells the model doubts most (ranked by the 90th percentile of the scores of the patches holding
their nuclei, over all their copies on the adequate negatives) are taken out of every slide,
negatives and positives alike: the patches holding their nuclei are dropped, as if the cells
had been ruled unfit for the NILM pool and kept off the slides. The default rule
(top_k_mean(k=10)) is recomputed on what is left and the slides compared as the calibration
study does at full size (each positive's patches joined to those of a random adequate negative
of its preparation): slide AUC with its bootstrap interval, and the adequate negatives below
the lowest positive (specificity when no positive may be missed, as the shipped calibration's
368 positives require for a 0.99 lower bound). A control row takes out K NILM cells drawn at
random instead (the median over ``--draws`` draws).

Read it as an upper bound on what such a ruling is worth, not as a result: the cells are
ranked on the same slides the figures are measured on, and a dropped patch also drops the
neighbours it shows. Figures describe the generated slides of the results' split.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cytoscreen.qa.generated import scored_slides
from cytoscreen.synth.slide import nucleus_patches
from cytoscreen.training.metrics import auc_with_ci

K_TOP = 10  # the default rule: top_k_mean(k=10)
F64 = npt.NDArray[np.float64]


@dataclass
class Slide:
    id: str
    prep: str
    negative: bool  # an adequate negative (else a positive)
    n_abnormal: int
    p: F64  # finite patch scores
    nilm_of_patch: list[set[int]]  # per patch, the NILM source cells whose nuclei it holds
    abnormal_p: F64 = field(default_factory=lambda: np.zeros(0))  # patches holding abnormal nuclei


def read_slides(results: Path) -> list[Slide]:
    out = []
    for slide in scored_slides(results):
        r, truth, store, p = slide.result, slide.truth, slide.store, slide.p
        negative = slide.adequate_negative
        if truth.label != "positive" and not negative:
            continue
        where = nucleus_patches(truth, np.asarray(store.coords, float), float(store.attrs.size_l0))
        cells: list[set[int]] = [set() for _ in range(len(p))]
        abnormal = set()
        for c, i in zip(truth.cells, where.tolist(), strict=True):
            if i >= 0 and not c.abnormal:
                cells[i].add(c.cric_cell_id)
            elif i >= 0:
                abnormal.add(i)
        finite = np.isfinite(p)
        hit = np.array(sorted(i for i in abnormal if finite[i]), np.int64)
        out.append(
            Slide(
                r.id,
                truth.prep,
                negative,
                truth.n_abnormal,
                p[finite],
                [s for s, f in zip(cells, finite.tolist(), strict=True) if f],
                p[hit],
            )
        )
    return out


def patch_requirement(slides: list[Slide], specificity: float = 0.80) -> str:
    """What a patch scorer needs for the issue's slide goal on one-cell slides under the max
    rule, against what this one does: the share of normal patches it may score above the
    threshold that keeps 99% of abnormal-cell patches, for an adequate negative of the median
    patch count to stay below it with probability ``specificity``."""
    neg = [s for s in slides if s.negative]
    normal = np.concatenate([s.p for s in neg])
    abnormal = np.concatenate([s.abnormal_p for s in slides if not s.negative])
    n = int(np.median([s.p.size for s in neg]))
    allowed = 1 - specificity ** (1 / n)
    t99 = float(np.quantile(abnormal, 0.01))  # 99% of abnormal-cell patches at or above it
    fpr = float((normal >= t99).mean())
    lines = [
        f"abnormal-cell patches of the positives: {abnormal.size}; patches of the adequate "
        f"negatives: {normal.size} (median {n} per slide)",
        f"threshold keeping 99% of abnormal-cell patches: {t99:.4f}; normal patches at or above "
        f"it: {fpr:.3f}",
        f"for a negative of {n} patches to stay below a threshold with probability "
        f"{specificity:g}, at most {allowed:.1e} of normal patches may reach it: "
        f"{fpr / allowed:,.0f} times fewer than now",
    ]
    t = float(np.quantile(normal, 1 - allowed))
    lines.append(
        f"threshold that {allowed:.1e} of normal patches reach: {t:.4f}; abnormal-cell patches "
        f"at or above it: {float((abnormal >= t).mean()):.3f} (the goal asks 0.99)"
    )
    return "\n".join(lines)


def doubt_ranking(slides: list[Slide]) -> list[int]:
    """NILM source cells of the adequate negatives, most doubted first (90th percentile of
    the scores of the patches holding their nuclei)."""
    per_cell: dict[int, list[float]] = defaultdict(list)
    for s in slides:
        if s.negative:
            for score, cells in zip(s.p.tolist(), s.nilm_of_patch, strict=True):
                for cid in cells:
                    per_cell[cid].append(score)
    p90 = {cid: float(np.percentile(v, 90)) for cid, v in per_cell.items()}
    return sorted(p90, key=lambda cid: (-p90[cid], cid))


def top_k_mean(p: F64) -> float:
    return float(np.sort(p)[-K_TOP:].mean()) if p.size else float("nan")


def kept(s: Slide, removed: set[int]) -> F64:
    if not removed:
        return s.p
    keep = np.array([not (cells & removed) for cells in s.nilm_of_patch], bool)
    return s.p[keep]


@dataclass
class Row:
    auc: float
    lo: float
    hi: float
    set_aside: int
    n_neg: int
    n_pos: int
    neg_median: float
    dropped: float  # share of the negatives' patches dropped


def figures(slides: list[Slide], removed: set[int], seed: int = 1) -> Row:
    neg = [s for s in slides if s.negative]
    pos = [s for s in slides if not s.negative]
    by_prep: dict[str, list[F64]] = defaultdict(list)
    neg_kept = [kept(s, removed) for s in neg]
    for s, q in zip(neg, neg_kept, strict=True):
        by_prep[s.prep].append(q)
    rng = np.random.default_rng(seed)
    pos_scores = []
    for s in pos:
        pool = by_prep.get(s.prep) or neg_kept
        other = pool[int(rng.integers(len(pool)))]
        pos_scores.append(top_k_mean(np.r_[kept(s, removed), other]))
    neg_scores = np.array([top_k_mean(q) for q in neg_kept])
    pos_arr = np.array(pos_scores)
    y = np.r_[np.ones(pos_arr.size), np.zeros(neg_scores.size)]
    m = auc_with_ci(y, np.r_[pos_arr, neg_scores], seed=0)
    assert m.value is not None and m.ci_low is not None and m.ci_high is not None
    total = sum(s.p.size for s in neg)
    return Row(
        m.value,
        m.ci_low,
        m.ci_high,
        int((neg_scores < pos_arr.min()).sum()),
        len(neg),
        len(pos),
        float(np.median(neg_scores)),
        1 - sum(q.size for q in neg_kept) / total,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--remove", type=int, nargs="+", default=[0, 1, 3, 5, 10, 20, 40])
    ap.add_argument("--draws", type=int, default=5, help="random draws for the control rows")
    args = ap.parse_args()

    slides = read_slides(args.results)
    ranking = doubt_ranking(slides)
    n_neg = sum(s.negative for s in slides)
    print(
        f"{len(slides)} slides ({len(slides) - n_neg} positives, {n_neg} adequate negatives); "
        f"{len(ranking)} NILM source cells on the negatives; most doubted first: "
        + ", ".join(str(c) for c in ranking[:10])
    )
    print("\nwhat the goal needs of a patch scorer (one-cell slides, max rule):")
    print(patch_requirement(slides))
    print(
        "\n| NILM source cells taken out | slide AUC, full size, top_k_mean(k=10) | negatives "
        "below the lowest positive | negatives' score (median) | negatives' patches dropped |"
    )
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for k in args.remove:
        r = figures(slides, set(ranking[:k]))
        print(
            f"| {k} most doubted | {r.auc:.3f} [{r.lo:.3f}, {r.hi:.3f}] (n = {r.n_pos} + "
            f"{r.n_neg}) | {r.set_aside}/{r.n_neg} | {r.neg_median:.3f} | {r.dropped:.1%} |"
        )
        if k == 0:
            continue
        draws = [
            figures(slides, set(rng.choice(ranking, size=k, replace=False).tolist()))
            for _ in range(args.draws)
        ]
        aucs = sorted(d.auc for d in draws)
        print(
            f"| {k} at random (median of {args.draws}) | {float(np.median(aucs)):.3f} "
            f"(range {aucs[0]:.3f}-{aucs[-1]:.3f}) | "
            f"{int(np.median([d.set_aside for d in draws]))}/{n_neg} | "
            f"{float(np.median([d.neg_median for d in draws])):.3f} | "
            f"{float(np.median([d.dropped for d in draws])):.1%} |"
        )


if __name__ == "__main__":
    main()
