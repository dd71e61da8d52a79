"""Choose and measure the cascade's first-stage threshold on generated validation slides.

    .venv/bin/python scripts/tune_cascade.py work/cal2/results --stage1 work/stage1 \
        --work work/cascade

Input: a scores-only results folder of generated slides (``calibrate_default_model.py
--screen``: patch caches scored by the full model, ``<slide>.cells.json`` ground truth beside
each slide) and a first-stage model folder (``cytoscreen train --config
configs/train/stage1.yaml``). Every valid cached patch is scored by the first stage at its
own resolution (``scoring.cascade.downsample``); scores are kept under ``--work`` so a rerun
only analyses.

Printed:

1. the first stage's patch AUC (patches holding an abnormal cell centre against every patch
   of the adequate negatives), and its cost per patch against the full model's, timed in this
   run on the same patches (downsampling included);
2. for candidate thresholds: abnormal cells whose patch it would clear (count, share, exact
   95% interval; also among the cells the full model scores >= 0.5), the share of patches it
   clears on adequate negatives and on all slides, and the inference time per patch that
   gives against the full model alone. The largest threshold that clears no abnormal cell
   of these slides is the zero-miss choice;
3. at the chosen threshold, the slide figures of the cascade (cleared patches scored 0)
   beside the single stage: slide AUC (each positive's patches joined to a random adequate
   negative's, as in the calibration; bootstrap 95% CI) and sensitivity at the shipped
   threshold on the slides as generated.

``--stage1 self`` takes the full model's own cached scores as the first stage: no first stage
can clear more at zero miss while it ranks patches no better than the full model, so its rows
are the ceiling of any cheaper one (its cost is the full model's; no time is saved).

Figures describe the generated slides of the fields these results were made from.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cytoscreen.scoring.cascade import downsample, pool_factor
from cytoscreen.scoring.scorer import Scorer
from cytoscreen.slide import load_calibration
from cytoscreen.slide.aggregate import aggregate, rule_label
from cytoscreen.slide.settings import AggregationSettings
from cytoscreen.slide_result import load_results
from cytoscreen.stats import clopper_pearson
from cytoscreen.synth.slide import load_truth
from cytoscreen.tiling.store import PatchStore
from cytoscreen.training.metrics import auc_with_ci

REPO = Path(__file__).resolve().parents[1]
ADEQUATE = 5000
F64 = npt.NDArray[np.float64]


def auc_text(pos: F64, neg: F64) -> str:
    """AUC of ``pos`` against ``neg`` with its bootstrap 95% interval and count."""
    y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    return auc_with_ci(y, np.r_[pos, neg], n_boot=2000).text(brackets=True)


def first_stage_scores(store: PatchStore, scorer: Scorer, factor: int) -> F64:
    """The first stage's probability for every patch of ``store`` (NaN where not valid)."""
    images, valid = store.images, store.valid
    chunk = store.chunk_patches
    out = np.full(len(valid), np.nan)
    for lo in range(0, len(valid), chunk):
        keep = valid[lo : lo + chunk]
        if not keep.any():
            continue
        pixels = np.asarray(images[lo : lo + chunk], dtype=np.uint8)[keep]
        prob = scorer.predict(downsample(pixels, factor))[:, scorer.card.positive_indices()]
        sel = np.flatnonzero(keep) + lo
        out[sel] = prob.sum(axis=1)
    return out


def cost_ratio(store: PatchStore, first: Scorer, full: Scorer, factor: int) -> tuple[float, float]:
    """Seconds per patch of the first stage (with downsampling) and of the full model, timed
    back to back on the same 256 patches (median of 3)."""
    pixels = np.asarray(store.images[:256], dtype=np.uint8)
    first.predict(downsample(pixels[:64], factor))
    full.predict(pixels[:64])
    t1, t2 = [], []
    for _ in range(3):
        t = time.perf_counter()
        first.predict(downsample(pixels, factor))
        t1.append(time.perf_counter() - t)
        t = time.perf_counter()
        full.predict(pixels)
        t2.append(time.perf_counter() - t)
    return float(np.median(t1)) / len(pixels), float(np.median(t2)) / len(pixels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument(
        "--stage1", required=True, help="first-stage model folder, or 'self' (the full model)"
    )
    ap.add_argument("--work", type=Path, required=True, help="folder for first-stage scores")
    ap.add_argument("--model", type=Path, default=REPO / "cytoscreen" / "models" / "default")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    full = Scorer.load(args.model, runtime="auto")
    itself = args.stage1 == "self"
    first = full if itself else Scorer.load(args.stage1, runtime="auto")
    calibration = load_calibration(args.model / "calibration.json")
    threshold, model_id = calibration.threshold, calibration.model_id
    rule = AggregationSettings(rule="top_k_mean", top_k=10)
    if calibration.rule != rule_label(rule):
        raise SystemExit(f"written for {rule_label(rule)}; the calibration says {calibration.rule}")
    args.work.mkdir(parents=True, exist_ok=True)

    slides = []  # (label, n_cells, full prob, first prob, patch index of each abnormal cell)
    timing = None
    for r in load_results(args.results):
        if r.path is None or r.cache is None or r.model_id != model_id:
            continue
        store = PatchStore.open(r.cache)
        scores = store.scores(model_id)
        assert scores is not None
        p2 = np.asarray(scores.stage()[:], float)
        factor = pool_factor(float(store.patch_mpp() or full.card.mpp), first.card.mpp)
        saved = args.work / f"{r.id}.npy"
        if itself:
            p1 = p2
        elif saved.exists():
            p1 = np.load(saved)
        else:
            p1 = first_stage_scores(store, first, factor)
            np.save(saved, p1)
        if timing is None:
            timing = (1.0, 1.0) if itself else cost_ratio(store, first, full, factor)
        truth = load_truth(Path(r.path).with_suffix(".cells.json"))
        xy = np.asarray(store.coords, float)
        side = float(store.attrs.size_l0)
        held = []
        for c in truth.cells:
            if c.abnormal:
                rx, ry = c.x - xy[:, 0], c.y - xy[:, 1]
                i = np.flatnonzero((rx >= 0) & (rx < side) & (ry >= 0) & (ry < side))
                if i.size and not np.isnan(p1[i[0]]):
                    held.append(int(i[0]))
        slides.append((truth.label, len(truth.cells), p2, p1, np.array(held, int)))
    if timing is None:
        raise SystemExit(f"{args.results}: no slide scored by {model_id}")

    neg = [s for s in slides if s[0] == "negative" and s[1] >= ADEQUATE]
    pos = [s for s in slides if s[0] == "positive"]
    ab1 = np.concatenate([s[3][s[4]] for s in pos])
    ab2 = np.concatenate([s[2][s[4]] for s in pos])
    neg1 = np.concatenate([s[3] for s in neg])
    neg1 = neg1[~np.isnan(neg1)]
    all1 = np.concatenate([s[3] for s in slides])
    all1 = all1[~np.isnan(all1)]
    auc = auc_text(ab1, neg1)
    c1, c2 = timing
    print(
        f"{len(pos)} positive slides ({ab1.size} abnormal cells in scored patches), {len(neg)} "
        f"adequate negatives ({neg1.size} patches); first stage {first.card.model_id} "
        f"({first.runtime_used}), full {full.card.model_id} ({full.runtime_used})"
    )
    print(f"first-stage patch AUC, abnormal-cell patches vs adequate negatives' patches: {auc}")
    if itself:
        print("first stage = the full model's own scores: the ceiling of any cheaper first stage")
    else:
        print(
            f"cost per patch: first stage {1e3 * c1:.2f} ms (downsampling included), full "
            f"{1e3 * c2:.2f} ms, ratio {c1 / c2:.3f}"
        )

    zero = float(ab1.min())  # clears nothing that holds an abnormal centre on these slides
    candidates = sorted({zero, *np.quantile(ab1, [0.001, 0.005, 0.01, 0.02, 0.05]).tolist()})
    print(
        f"\n{'threshold':>10}{'cells cleared':>16}{'95% CI':>18}{'of full>=0.5':>14}"
        f"{'neg cleared':>13}{'all cleared':>13}{'time vs full':>14}"
    )
    hi = ab2 >= 0.5
    for t in candidates:
        miss = ab1 < t
        lo_, hi_ = clopper_pearson(int(miss.sum()), ab1.size)
        cleared_neg = float(np.mean(neg1 < t))
        cleared_all = float(np.mean(all1 < t))
        rel = (c1 + (1.0 - cleared_all) * c2) / c2
        print(
            f"{t:>10.5f}{f'{miss.sum()}/{ab1.size}':>16}{f'[{lo_:.4f}, {hi_:.4f}]':>18}"
            f"{f'{(miss & hi).sum()}/{hi.sum()}':>14}{cleared_neg:>13.3f}{cleared_all:>13.3f}"
            f"{'-' if itself else f'{rel:.3f}':>14}"
        )

    rng = np.random.default_rng(args.seed)
    picks = rng.integers(len(neg), size=len(pos))
    print(f"\nslides at the zero-miss threshold {zero:.5f} (cleared patches scored 0):")
    for name, use in (("single stage", False), ("cascade", True)):

        def prob(s: tuple, u: bool = use) -> F64:
            return np.where(s[3] < zero, 0.0, s[2]) if u else s[2]

        ns = np.array([aggregate(prob(s), rule) for s in neg], float)
        ps = np.array([aggregate(prob(s), rule) for s in pos], float)
        joined = np.array(
            [
                aggregate(np.r_[prob(s), prob(neg[j])], rule)
                for s, j in zip(pos, picks, strict=True)
            ],
            float,
        )
        full_auc = auc_text(joined, ns)
        tp = int((ps >= threshold).sum())
        lo_, hi_ = clopper_pearson(tp, ps.size)
        tn = int((ns < threshold).sum())
        print(
            f"  {name:<13} AUC full size {full_auc}; at threshold {threshold:.4f}: sensitivity "
            f"{tp}/{ps.size} [{lo_:.3f}, {hi_:.3f}], specificity {tn}/{ns.size}"
        )


if __name__ == "__main__":
    main()
