"""Would another inference precision keep the shipped calibration? Speed and score changes on
the slides the calibration was made on.

    .venv/bin/python scripts/compare_precisions.py work/cal2/results --top 100
    .venv/bin/python scripts/compare_precisions.py work/cal2/results --top 100 --int8 40

For every slide of a scores-only results folder (the calibration's), the ``--top`` patches the
stored scores rank highest are scored again through OpenVINO at fp32 and with the bf16
precision hint, slide by slide in turn (so load from other jobs falls on all alike). With
``--int8 N`` also an int8 graph, quantised by NNCF (post-training, ``pip install nncf``) on
16 patches (the 8 highest and 8 at random) of each of N slides drawn at random (seed 0), which
are then left out of the measurement. Printed: the time of each and its ratio to fp32, how far
single patch scores and the slides' scores under the calibration's rule (top_k_mean) move, and
how many slides cross the shipped threshold. The top patches are the ones a top-k rule reads; a
patch outside them that a precision lifts into the top k is not seen, so the slide changes are
a lower bound.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cytoscreen.scoring.scorer import Scorer
from cytoscreen.slide import load_calibration
from cytoscreen.slide_result import SlideResult, load_results
from cytoscreen.tiling.store import PatchStore
from cytoscreen.types import scores_key

REPO = Path(__file__).resolve().parents[1]
Pixels = npt.NDArray[np.uint8]
BATCH = 64


def _patches(r: SlideResult, top: int, rand: int, rng: np.random.Generator) -> Pixels:
    """The slide's ``top`` highest-scoring patches (stored scores) and ``rand`` more at random."""
    assert r.cache is not None and r.model_id is not None
    store = PatchStore.open(r.cache)
    scores = store.scores(scores_key(r.model_id, r.scoring))
    assert scores is not None
    prob = np.asarray(scores.stage()[:], float)
    ok = np.flatnonzero(~np.isnan(prob))
    pick = ok[np.argsort(prob[ok])[::-1][:top]]
    if rand:
        pick = np.r_[pick, rng.choice(ok, min(rand, ok.size), replace=False)]
    pick = np.unique(pick)
    return np.asarray(store.images.get_orthogonal_selection((pick,)), dtype=np.uint8)


def _int8(model_dir: Path, calib: Pixels) -> Callable[[Pixels], Any]:
    """An int8 OpenVINO graph of the model, quantised by NNCF on ``calib`` and compiled as the
    Scorer compiles its engines (``OpenVinoEngine.compile``)."""
    import nncf  # an optional measurement dependency: pip install nncf

    from cytoscreen.scoring.card import read_card
    from cytoscreen.scoring.openvino_engine import (
        OpenVinoEngine,
        default_cache_root,
        file_key,
        read_cached,
    )

    card = read_card(model_dir)
    key = file_key(card)
    cached = read_cached(default_cache_root() / key) if key else None
    if cached is None:
        raise SystemExit("no cached OpenVINO graph of the model: screen one slide first")
    data = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])
    quantised = nncf.quantize(cached[0], data, subset_size=len(calib), fast_bias_correction=True)
    no_reference = np.zeros((0, card.num_classes), np.float32)  # int8: checked finite only
    engine = OpenVinoEngine.compile(quantised, card, "int8", no_reference, source="quantised")
    return lambda px: engine.predict(px, len(px))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--model", type=Path, default=REPO / "cytoscreen" / "models" / "default")
    ap.add_argument("--top", type=int, default=100, help="patches per slide")
    ap.add_argument("--int8", type=int, default=0, metavar="N", help="slides to quantise on")
    args = ap.parse_args()

    calibration = load_calibration(args.model / "calibration.json")
    threshold, rule = calibration.threshold, calibration.rule
    if not rule.startswith("top_k_mean(k="):
        raise SystemExit(f"written for top_k_mean; the calibration says {rule}")
    k = int(rule.split("=")[1].rstrip(")"))
    scorers = {
        p: Scorer.load(args.model, precision=p, runtime="openvino") for p in ("fp32", "bf16")
    }
    card = scorers["fp32"].card
    positive = card.positive_indices()
    results = [r for r in load_results(args.results) if r.cache and r.model_id == card.model_id]
    if not results:
        raise SystemExit(f"{args.results}: no slide scored by the model")
    rng = np.random.default_rng(0)
    engines: dict[str, Callable[[Pixels], Any]] = {n: s.predict for n, s in scorers.items()}
    if args.int8:
        held = set(rng.permutation(len(results))[: args.int8].tolist())
        calib = np.concatenate([_patches(results[i], 8, 8, rng) for i in sorted(held)])
        engines["int8"] = _int8(args.model, calib)
        results = [r for i, r in enumerate(results) if i not in held]
        print(f"int8: quantised on {len(calib)} patches of {len(held)} slides (left out below)")
    seconds = dict.fromkeys(engines, 0.0)
    patch: dict[str, list[np.ndarray]] = {n: [] for n in engines}
    slide: dict[str, list[float]] = {n: [] for n in engines}
    for r in results:
        pixels = _patches(r, args.top, 0, rng)
        for name, run in engines.items():
            t = time.perf_counter()
            out = np.concatenate([run(pixels[i : i + BATCH]) for i in range(0, len(pixels), BATCH)])
            seconds[name] += time.perf_counter() - t
            p = out[:, positive].sum(axis=1)
            patch[name].append(p)
            slide[name].append(float(np.sort(p)[::-1][:k].mean()))
    base = np.concatenate(patch["fp32"])
    s0 = np.array(slide["fp32"])
    print(f"{len(s0)} slides, {base.size} patches (the top {args.top} of each)")
    cross = f"cross {threshold:.4f}"
    print(f"{'precision':<10}{'seconds':>9}{'x fp32':>8}{'patch |d| median':>18}{'p99':>8}"
          f"{'max':>8}{'slide |d| median':>18}{'max':>8}{cross:>14}")  # fmt: skip
    for name in engines:
        d = np.abs(np.concatenate(patch[name]) - base)
        s = np.array(slide[name])
        moved = np.abs(s - s0)
        crossed = int(((s0 >= threshold) != (s >= threshold)).sum())
        print(f"{name:<10}{seconds[name]:>9.1f}{seconds['fp32'] / seconds[name]:>8.2f}"
              f"{np.median(d):>18.4f}{np.quantile(d, 0.99):>8.4f}{d.max():>8.4f}"
              f"{np.median(moved):>18.4f}{moved.max():>8.4f}{crossed:>14}")  # fmt: skip


if __name__ == "__main__":
    main()
