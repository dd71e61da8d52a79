"""Would two models together separate slides better than either? Measured from two runs' scores.

    .venv/bin/python scripts/measure_ensemble.py work/cal2/results_bf16 \
        work/cal2/results_edge1_bf16

Both folders are scores-only runs over the same generated slides (matched by slide path), each
by its own model. Every patch's two scores are combined (mean probability, mean logit,
geometric mean, minimum) and each slide scored by top_k_mean(k=10), as the shipped calibration
does; printed for each model alone and each combination: slide AUC at full size (each positive's
patches joined to a random adequate negative's, as in the calibration), for all positives and
those with one abnormal cell, and the adequate negatives below the lowest positive and below
the positives' 1st percentile. Figures describe generated slides of the fields the results were
made from.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.special import expit, logit

from cytoscreen.qa.generated import ScoredSlide, scored_slides
from cytoscreen.slide.aggregate import aggregate
from cytoscreen.slide.settings import AggregationSettings
from cytoscreen.training.metrics import auc_with_ci

F64 = npt.NDArray[np.float64]
TOP10 = AggregationSettings(rule="top_k_mean", top_k=10)


def clipped_logit(p: F64) -> F64:
    """The logit of probabilities kept off 0 and 1 (a score of exactly 0 or 1 stays finite)."""
    return np.asarray(logit(np.clip(p, 1e-6, 1 - 1e-6)), float)


COMBINE: dict[str, Callable[[F64, F64], F64]] = {
    "first alone": lambda a, b: a,
    "second alone": lambda a, b: b,
    "mean probability": lambda a, b: (a + b) / 2,
    "mean logit": lambda a, b: expit((clipped_logit(a) + clipped_logit(b)) / 2),
    "geometric mean": lambda a, b: np.sqrt(a * b),
    "minimum": np.minimum,
}


def slide_score(p: F64) -> float:
    score = aggregate(p, TOP10)
    assert score is not None  # every slide here has scored patches
    return score


def matched(first: Path, second: Path) -> list[tuple[ScoredSlide, ScoredSlide]]:
    """The slides both runs scored, paired by slide path, with the same patch grid."""
    other = {s.result.path: s for s in scored_slides(second)}
    pairs = []
    for s in scored_slides(first):
        t = other.get(s.result.path)
        if t is not None and t.p.shape == s.p.shape:
            pairs.append((s, t))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("first", type=Path, help="results folder scored by the first model")
    ap.add_argument("second", type=Path, help="the same slides scored by the second model")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    pairs = matched(args.first, args.second)
    pos = [x for x in pairs if x[0].truth.label == "positive"]
    neg = [x for x in pairs if x[0].adequate_negative]
    if not pos or not neg:
        raise SystemExit(f"need positives and adequate negatives in both: {len(pos)}, {len(neg)}")
    one = np.array([sum(c.abnormal for c in s.truth.cells) == 1 for s, _ in pos])
    join = np.random.default_rng(args.seed).integers(len(neg), size=len(pos))
    print(
        f"{len(pos)} positives ({int(one.sum())} with one abnormal cell), {len(neg)} adequate "
        f"negatives; models {pos[0][0].result.model_id} and {pos[0][1].result.model_id}"
    )
    print(f"{'scores':<18}{'AUC full size':>28}{'1-cell AUC':>28}{'below lowest':>14}"
          f"{'below 1%':>10}")  # fmt: skip
    for name, combine in COMBINE.items():
        ns = np.array([slide_score(combine(a.p, b.p)) for a, b in neg])
        ps = np.array(
            [
                slide_score(np.r_[combine(a.p, b.p), combine(neg[j][0].p, neg[j][1].p)])
                for (a, b), j in zip(pos, join, strict=True)
            ]
        )
        texts = []
        for keep in (np.ones(len(ps), bool), one):
            y = np.r_[np.ones(int(keep.sum())), np.zeros(ns.size)]
            texts.append(auc_with_ci(y, np.r_[ps[keep], ns], n_boot=2000).text(brackets=True))
        lowest = int((ns < ps.min()).sum())
        first_pct = int((ns < np.quantile(ps, 0.01)).sum())
        print(
            f"{name:<18}{texts[0]:>28}{texts[1]:>28}{f'{lowest}/{ns.size}':>14}"
            f"{f'{first_pct}/{ns.size}':>10}"
        )


if __name__ == "__main__":
    main()
