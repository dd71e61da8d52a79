"""What a second look at a slide's top patches would give: the eight turns and flips of each.

    .venv/bin/python scripts/measure_top_rescore.py work/cal2/results --work work/rescore \
        --top 50

A slide's score is the mean of its ten best patches, so one normal patch the model happens to
score high lifts a negative slide as much as an abnormal cell lifts a positive one. A cheap
second stage can look again at the few best patches only: here each of a slide's ``--top``
best patches (read back from the patch cache) is scored in its eight orientations (the
dihedral group: four turns, each mirrored; the model trained with flips and turns, so each is
a fair view) and its score replaced by their mean (or minimum / median). The other patches
keep their scores. The eight scores of every top patch are kept under ``--work`` (one
``<slide id>.npz`` per slide), so a rerun only analyses.

Printed, for the rules: slide AUC of top_k_mean(k=10) on the slides at full size (each
positive's patches joined to a random adequate negative's, as in the calibration), for all
positives and those with one abnormal cell; the negatives set aside at the threshold that
misses no positive; and how often the top-10 patches hold an abnormal cell. Figures describe
the generated slides the results were made from.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.special import expit, logit

from cytoscreen.qa.generated import ADEQUATE, scored_slides
from cytoscreen.scoring.scorer import Scorer
from cytoscreen.synth.slide import nucleus_patches
from cytoscreen.tiling.store import PatchStore
from cytoscreen.training.metrics import auc_with_ci

REPO = Path(__file__).resolve().parents[1]
F64 = npt.NDArray[np.float64]


def dihedral(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The eight orientations of every (N, H, W, 3) patch, orientation-major: (8N, H, W, 3)."""
    views = []
    for flip in (False, True):
        base = images[:, :, ::-1] if flip else images
        views += [np.rot90(base, k, axes=(1, 2)) for k in range(4)]
    return np.ascontiguousarray(np.concatenate(views))


def rescore(store: PatchStore, p: F64, top: int, scorer: Scorer) -> tuple[npt.NDArray, npt.NDArray]:
    """The slide's ``top`` best patches (indices) and their scores in eight orientations:
    (top, 8)."""
    finite = np.flatnonzero(np.isfinite(p))
    idx = np.sort(finite[np.argsort(-p[finite], kind="stable")[:top]])
    images = np.asarray(store.images.get_orthogonal_selection((idx,)), dtype=np.uint8)
    probs = scorer.predict(dihedral(images))[:, 1].reshape(8, len(idx)).T
    return idx, probs


def top10(q: F64) -> float:
    """top_k_mean(k=10) of a slide's finite scores."""
    q = q[np.isfinite(q)]
    return float(np.sort(q)[-10:].mean())


def auc_text(pos: F64, neg: F64) -> str:
    y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    return auc_with_ci(y, np.r_[pos, neg], n_boot=2000).text(brackets=True)


def logit_mean(v: F64) -> F64:
    """The views' mean in logit space, back to a probability."""
    return np.asarray(expit(logit(np.clip(v, 1e-6, 1 - 1e-6)).mean(axis=1)), float)


HOW: dict[str, Callable[[F64], F64] | None] = {
    "grid (as screened)": None,
    "upright view (check)": lambda v: v[:, 0],
    "mean of 8 views": lambda v: v.mean(axis=1),
    "median of 8 views": lambda v: np.median(v, axis=1),
    "min of 8 views": lambda v: v.min(axis=1),
    "mean of logits": logit_mean,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--top", type=int, default=50)
    ap.add_argument("--model", type=Path, default=REPO / "cytoscreen" / "models" / "default")
    ap.add_argument("--runtime", default="openvino")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--limit", type=int, default=0, help="at most this many slides (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    scorer = Scorer.load(args.model, runtime=args.runtime, precision=args.precision)
    print(scorer.describe(), flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    slides = [x for x in scored_slides(args.results) if x.result.model_id == scorer.card.model_id]
    if args.limit:
        slides = slides[: args.limit]
    for slide in slides:
        r, truth, store, p = slide.result, slide.truth, slide.store, slide.p
        saved = args.work / f"{r.id}.npz"
        if not saved.exists():
            idx, views = rescore(store, p, args.top, scorer)
            np.savez(saved, idx=idx, scores=views)
            print(f"{r.id}: top {args.top} of {np.isfinite(p).sum()} rescored", flush=True)
        z = np.load(saved)
        xy = np.asarray(store.coords, float)
        where = nucleus_patches(truth, xy, float(store.attrs.size_l0))
        hit = np.zeros(len(xy), bool)
        hit[
            [i for c, i in zip(truth.cells, where.tolist(), strict=True) if c.abnormal and i >= 0]
        ] = True
        rows.append((r.id, truth, p, z["idx"], np.asarray(z["scores"], float), hit))

    # the upright view must reproduce the screened score (same runtime and precision)
    drift = max(float(np.abs(s[:, 0] - p[i]).max()) for _, _, p, i, s, _ in rows)
    print(f"\n{len(rows)} slides; upright view against the screened score: max |diff| {drift:.4f}")

    negs = [x for x in rows if x[1].label == "negative" and len(x[1].cells) >= ADEQUATE]
    poss = [x for x in rows if x[1].label == "positive"]
    one = np.array([sum(c.abnormal for c in x[1].cells) == 1 for x in poss])
    if not negs or not poss:
        raise SystemExit(f"need positives and adequate negatives: {len(poss)} and {len(negs)}")
    rng = np.random.default_rng(args.seed)
    join = rng.integers(len(negs), size=len(poss))
    print(f"{len(poss)} positives ({one.sum()} with one abnormal cell), {len(negs)} negatives")
    head = f"{'AUC full size':>28}{'1-cell AUC':>28}{'spec, no miss':>15}{'top-10 hit':>12}"
    print(f"{'rule':<22}{head}")
    for name, how in HOW.items():

        def second(p: F64, i: npt.NDArray, s: F64, how: Callable[[F64], F64] | None = how) -> F64:
            q = p.copy()
            if how is not None:
                q[i] = how(s)
            return q

        ns = np.array([top10(second(p, i, s)) for _, _, p, i, s, _ in negs])
        ps, hits = [], 0
        for (_, _, p, i, s, hit), j in zip(poss, join, strict=True):
            q = second(p, i, s)
            _, _, np_, ni, nsc, _ = negs[j]
            ps.append(top10(np.r_[q, second(np_, ni, nsc)]))
            fin = np.flatnonzero(np.isfinite(q))
            hits += bool(hit[fin[np.argsort(-q[fin])[:10]]].any())
        pa = np.array(ps)
        spec = int((ns < pa.min()).sum())
        print(
            f"{name:<22}{auc_text(pa, ns):>28}{auc_text(pa[one], ns):>28}"
            f"{f'{spec}/{ns.size}':>15}{f'{hits}/{len(poss)}':>12}"
        )


if __name__ == "__main__":
    main()
