"""Would another inference precision keep the shipped calibration? Speed and score changes on
the slides the calibration was made on.

    .venv/bin/python scripts/compare_precisions.py work/cal2/results --top 100

For every slide of a scores-only results folder (the calibration's), the ``--top`` patches the
stored scores rank highest are scored again through OpenVINO at fp32 and with the bf16
precision hint, slide by slide in turn (so load from other jobs falls on both alike). Printed:
the time of each and their ratio, how far single patch scores and the slides' scores under the
calibration's rule (top_k_mean) move, and how many slides cross the shipped threshold. The top
patches are the ones a top-k rule reads; a patch outside them that bf16 lifts into the top k is
not seen, so the slide changes are a lower bound.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cytoscreen.scoring.scorer import Scorer
from cytoscreen.slide import load_calibration
from cytoscreen.slide_result import load_results
from cytoscreen.tiling.store import PatchStore

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--model", type=Path, default=REPO / "cytoscreen" / "models" / "default")
    ap.add_argument("--top", type=int, default=100, help="patches per slide")
    args = ap.parse_args()

    calibration = load_calibration(args.model / "calibration.json")
    threshold, rule = calibration.threshold, calibration.rule
    if not rule.startswith("top_k_mean(k="):
        raise SystemExit(f"written for top_k_mean; the calibration says {rule}")
    k = int(rule.split("=")[1].rstrip(")"))
    engines = {
        p: Scorer.load(args.model, precision=p, runtime="openvino") for p in ("fp32", "bf16")
    }
    seconds = dict.fromkeys(engines, 0.0)
    patch_change, slide = [], []
    for r in load_results(args.results):
        if r.cache is None or r.model_id != engines["fp32"].card.model_id:
            continue
        store = PatchStore.open(r.cache)
        scores = store.scores(r.model_id)
        assert scores is not None
        prob = np.asarray(scores.stage()[:], float)
        ok = np.flatnonzero(~np.isnan(prob))
        top = np.sort(ok[np.argsort(prob[ok])[::-1][: args.top]])
        pixels = np.asarray(store.images.get_orthogonal_selection((top,)), dtype=np.uint8)
        out = {}
        for name, scorer in engines.items():
            t = time.perf_counter()
            out[name] = scorer.predict(pixels)[:, scorer.card.positive_indices()].sum(axis=1)
            seconds[name] += time.perf_counter() - t
        patch_change.append(np.abs(out["bf16"] - out["fp32"]))
        slide.append([np.sort(out[n])[::-1][:k].mean() for n in ("fp32", "bf16")])
    if not slide:
        raise SystemExit(f"{args.results}: no slide scored by the model")
    d = np.concatenate(patch_change)
    s = np.array(slide)
    moved = np.abs(s[:, 1] - s[:, 0])
    crossed = int(((s[:, 0] >= threshold) != (s[:, 1] >= threshold)).sum())
    print(f"{len(s)} slides, {d.size} patches (the top {args.top} of each)")
    print(
        f"time: fp32 {seconds['fp32']:.1f} s, bf16 {seconds['bf16']:.1f} s, "
        f"ratio {seconds['fp32'] / seconds['bf16']:.2f}x"
    )
    print(
        f"patch |bf16 - fp32|: median {np.median(d):.4f}, 99th percentile "
        f"{np.quantile(d, 0.99):.4f}, max {d.max():.4f}"
    )
    print(f"slide {rule} |change|: median {np.median(moved):.4f}, max {moved.max():.4f}")
    print(f"slides crossing the shipped threshold {threshold:.4f}: {crossed} of {len(s)}")


if __name__ == "__main__":
    main()
