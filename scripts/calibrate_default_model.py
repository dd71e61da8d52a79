"""Calibrate the bundled model on generated validation slides and choose the aggregation rule.

    .venv/bin/python scripts/calibrate_default_model.py --negative 12 --positive 12

1. Generates slides from the CRIC *validation* cells of the model's split
   (data_manifests/cric_splits.json): the model never trained on these cells.
2. Screens them with ``--scores-only`` (tile + score, no decision).
3. For each aggregation rule prints the slide-level AUC (bootstrap 95% CI), and the threshold,
   sensitivity and specificity (Clopper-Pearson 95% CIs, counts) at the target sensitivity,
   and how often the top-10 fields hold a true abnormal cell on positive slides.
4. Writes calibration.json for the chosen rule next to the model (--write).

Figures measured here describe generated slides, not clinical performance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import zarr

from cytoscreen.config import load_config
from cytoscreen.pipeline import DEFAULT_MODEL_DIR, screen
from cytoscreen.scoring.checkpoint import load_checkpoint
from cytoscreen.slide import (
    AggregationSettings,
    aggregate,
    calibrate,
    find_fields,
    rule_label,
    save_calibration,
)
from cytoscreen.synth import load_cell_kit, load_truth, make_slide_set
from cytoscreen.training.metrics import auc_with_ci
from cytoscreen.training.splits import load_cell_splits
from cytoscreen.types import SCORING_KEYS

RULES = {
    "max": AggregationSettings(rule="max"),
    "top_k_mean(k=5)": AggregationSettings(rule="top_k_mean", top_k=5),
    "top_k_mean(k=10)": AggregationSettings(rule="top_k_mean", top_k=10),  # the default
    "noisy_or(k=10)": AggregationSettings(rule="noisy_or", noisy_or_top_k=10),
    "count_over(0.5)": AggregationSettings(rule="count_over", patch_threshold=0.5),
}


def slide_data(results: Path, set_dir: Path, model_id: str) -> list[dict]:
    rows = []
    with (set_dir / "manifest.csv").open(encoding="utf-8") as fh:
        import csv

        manifest = {r["path"]: r for r in csv.DictReader(fh)}
    for result_file in sorted((results / "slides").glob("*/result.json")):
        res = json.loads(result_file.read_text())
        if res.get("status") != "ok":
            continue
        rel = Path(res["path"]).resolve().relative_to(set_dir.resolve()).as_posix()
        row = manifest[rel]
        if row["label"] == "blank":
            continue
        store = Path(res["cache"])
        root = zarr.open_group(store, mode="r")
        prob = np.asarray(root[f"scores/{model_id}/prob"][:], dtype=np.float64)
        coords = np.asarray(root["coords"][:])
        size_l0 = float(root.attrs["cytoscreen"]["size_l0"])
        truth = load_truth(set_dir / row["ground_truth"])
        abnormal = np.array([(c.x, c.y) for c in truth.cells if c.abnormal]).reshape(-1, 2)
        rows.append(
            {
                "id": row["slide_id"],
                "label": int(row["label"] == "positive"),
                "worst": row["worst_bethesda"],
                "prob": prob,
                "coords": coords,
                "size_l0": size_l0,
                "abnormal": abnormal,
            }
        )
    return rows


def top_fields_hit(slide: dict, n: int = 10, prob: np.ndarray | None = None) -> bool:
    """Whether one of the top ``n`` fields holds a true abnormal cell (``prob``: other patch
    scores for the same patches, e.g. shuffled)."""
    scores = slide["prob"] if prob is None else prob
    fields = find_fields(scores, slide["coords"], slide["size_l0"])[:n]
    for f in fields:
        xy = slide["abnormal"]
        inside = (xy[:, 0] >= f.x0) & (xy[:, 0] < f.x1) & (xy[:, 1] >= f.y0) & (xy[:, 1] < f.y1)
        if inside.any():
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/cytoscreen-calibration"))
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--negative", type=int, default=12)
    ap.add_argument("--positive", type=int, default=12)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--write", action="store_true", help="write calibration.json beside the model")
    args = ap.parse_args()

    set_dir, results = args.work / "val_set", args.work / "results"
    if not (set_dir / "manifest.csv").is_file():
        splits = load_cell_splits()
        make_slide_set(
            set_dir, args.negative, args.positive, args.size, seed=args.seed,
            kit=load_cell_kit(), splits=(0.0, 1.0, 0.0), clustering=0.5,
            cell_splits={"train": set(), "val": splits.ids["val"], "test": set()},
        )  # fmt: skip
    cfg = load_config(overrides={"triage.min_cellularity": 0})
    screen([set_dir / "slides"], results, cfg, model_dir=args.model, scores_only=True)
    _, card = load_checkpoint(args.model)
    slides = slide_data(results, set_dir, card.model_id)
    labels = np.array([s["label"] for s in slides])
    print(f"\n{len(slides)} generated validation slides ({labels.sum()} positive), model "
          f"{card.model_id}, target sensitivity {args.target}")  # fmt: skip
    head = f"{'rule':<18}{'AUC (95% CI)':<24}{'threshold':>10}  "
    print(head + f"{'sensitivity':<28}{'specificity':<28}")
    source = (
        f"{len(slides)} generated validation slides ({int(labels.sum())} positive, "
        f"{args.size} px at 0.25 um/px) from the CRIC val cells of data_manifests/cric_splits.json"
        f" (scripts/calibrate_default_model.py --negative {args.negative} --positive "
        f"{args.positive} --size {args.size} --seed {args.seed})"
    )
    run_info = json.loads((results / "run.json").read_text())
    scoring = {k: str(run_info["scoring"][k]) for k in SCORING_KEYS}
    table = {}
    for name, settings in RULES.items():
        scores = [aggregate(s["prob"], settings) for s in slides]
        auc = auc_with_ci(labels, np.array(scores, dtype=float), seed=0)
        cal = calibrate(scores, labels.tolist(), model_id=card.model_id,
                        rule=rule_label(settings), data_source=source,
                        target_sensitivity=args.target, scoring=scoring)  # fmt: skip
        sens, spec = cal.sensitivity, cal.specificity
        table[name] = (auc, cal, settings)
        spec_txt = "n/a" if spec is None else (
            f"{spec.value:.2f} ({spec.k}/{spec.n}) {spec.lower:.2f}-{spec.upper:.2f}")  # fmt: skip
        print(f"{name:<18}{auc.value:.3f} ({auc.ci_low:.3f}-{auc.ci_high:.3f})    "
              f"{cal.threshold:>10.4g}  {sens.value:.2f} ({sens.k}/{sens.n}) "
              f"{sens.lower:.2f}-{sens.upper:.2f}     {spec_txt}")  # fmt: skip
    positives = [s for s in slides if s["label"] == 1]
    hits = sum(top_fields_hit(s) for s in positives)
    print(f"\ntop-10 fields hold a true abnormal cell on {hits}/{len(positives)} positive slides")
    # chance level: the same fields machinery on each slide's patch scores shuffled among its
    # patches (small slides have few fields, so even a random ranking finds many cells)
    rng = np.random.default_rng(0)
    chance = [
        sum(top_fields_hit(s, prob=rng.permutation(s["prob"])) for s in positives)
        for _ in range(20)
    ]
    print(
        f"with the scores shuffled within each slide (20 draws): mean {np.mean(chance):.1f}, "
        f"range {min(chance)}-{max(chance)} of {len(positives)}"
    )
    best = max(table, key=lambda k: table[k][0].value)
    default = rule_label(load_config().aggregation)
    print(f"highest AUC: {best}; the configured rule is {default} (change the default only when")
    print("the difference is beyond the confidence intervals)")
    if args.write:  # calibrate the rule `screen` uses by default
        cal = next(c for _, c, st in table.values() if rule_label(st) == default)
        out = args.model / "calibration.json"
        save_calibration(cal, out)
        print(f"wrote {out}")
        for w in cal.warnings:
            print(f"warning: {w}")


if __name__ == "__main__":
    main()
