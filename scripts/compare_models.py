"""Compare candidate patch scorers with short training runs of equal time budget.

    nice -n 10 .venv/bin/python scripts/compare_models.py --run lite0_imagenet --epochs 8
    .venv/bin/python scripts/compare_models.py --table          # markdown table of the results

Each run trains on the ``train`` cells of data_manifests/cric_splits.json, then measures on the
``val`` cells: AUC (bootstrap 95% CI) with fp32 and with bf16 + channels_last inference, the
cells-only AUC (abnormal cells against NILM cells, near-empty "background" crops left out: the
discrimination screening actually needs), and inference patches/s for both.
Results are merged into cytoscreen/models/comparison.json.
Throughput on this shared 2-core CPU varies with the other jobs running: compare within a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cytoscreen.scoring.checkpoint import load_checkpoint
from cytoscreen.scoring.infer import Scorer
from cytoscreen.training.config import load_train_config
from cytoscreen.training.data import BACKGROUND, read_cric_manifest
from cytoscreen.training.evaluate import positive_scores, render_eval_set, throughput
from cytoscreen.training.loop import train
from cytoscreen.training.metrics import auc_with_ci
from cytoscreen.training.splits import apply_splits, load_cell_splits

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "cytoscreen/models/comparison.json"
# name -> (timm architecture, start, learning rate)
CANDIDATES: dict[str, tuple[str, str, float]] = {
    "lite0_imagenet": ("efficientnet_lite0", "imagenet", 5e-4),
    "lite0_scratch": ("efficientnet_lite0", "none", 1e-3),
    "mnv3_scratch": ("mobilenetv3_large_100", "none", 1e-3),
    "resnet18_scratch": ("resnet18", "none", 1e-3),
}


def run(
    name: str, minutes: float | None, epochs: int, manifest: Path, work: Path, threads: int
) -> dict[str, object]:
    arch, start, lr = CANDIDATES[name]
    torch.set_num_threads(threads)
    cfg = load_train_config(
        REPO / "configs/train/default.yaml",
        arch=arch,
        pretrained=start,
        lr=lr,
        epochs=epochs,
        max_minutes=minutes,
    )
    cells = apply_splits(read_cric_manifest(manifest), load_cell_splits(), source=manifest)
    t0 = time.perf_counter()
    res = train(cfg, cells["train"], cells["val"], work / name, device="cpu", quiet=True)
    train_s = time.perf_counter() - t0
    images, labels = render_eval_set(cells["val"], cfg)
    out: dict[str, object] = {
        "arch": arch,
        "start": start,
        "lr": lr,
        "budget_min": minutes,
        "budget_epochs": epochs,
        "train_s": round(train_s, 1),
        "epochs": len(res.history),
        "best_epoch": res.best_epoch,
        "train_precision": res.precision,
        "n_val": int(len(labels)),
        "n_val_abnormal": int(labels.sum()),
    }
    cells_only = np.array([e.category != BACKGROUND for e in cells["val"]])
    model, card = load_checkpoint(work / name)
    out["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    for key, prec, cl in (("fp32", "fp32", False), ("bf16_cl", "bf16", True)):
        scorer = Scorer(load_checkpoint(work / name)[0], card, "cpu", prec, channels_last=cl)
        scores = positive_scores(scorer, images)
        m = auc_with_ci(labels, scores, seed=0)
        out[f"auc_{key}"] = [round(m.value, 4), round(m.ci_low, 4), round(m.ci_high, 4)]
        c = auc_with_ci(labels[cells_only], scores[cells_only], seed=0)
        out[f"auc_cells_{key}"] = [round(c.value, 4), round(c.ci_low, 4), round(c.ci_high, 4)]
        out[f"pps_{key}"] = round(throughput(scorer), 1)
    return out


def _ci(v: object) -> str:
    if not isinstance(v, list):
        return "not measured"
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def table(results: dict[str, dict[str, object]]) -> str:
    head = (
        "| candidate | arch | start | params (M) | epochs in budget | val AUC fp32 [95% CI] "
        "| val AUC bf16+CL | cells-only AUC fp32 [95% CI] | patches/s fp32 "
        "| patches/s bf16+CL |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name, r in results.items():
        a, b = r["auc_fp32"], r["auc_bf16_cl"]
        assert isinstance(a, list) and isinstance(b, list)
        rows.append(
            f"| {name} | {r['arch']} | {r['start']} | {r['params_m']} | {r['epochs']} "
            f"| {a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}] | {b[0]:.3f} (diff {b[0] - a[0]:+.4f}) "
            f"| {_ci(r.get('auc_cells_fp32'))} | {r['pps_fp32']} | {r['pps_bf16_cl']} |"
        )
    return head + "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", nargs="*", choices=sorted(CANDIDATES), default=[])
    ap.add_argument("--minutes", type=float, default=None, help="time budget per run")
    ap.add_argument(
        "--epochs",
        type=int,
        default=8,
        help="epoch budget per run: equal epochs compare fairly on a loaded machine",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--manifest", type=Path, default=REPO.parent / "shared/data/cric/manifest.csv")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cytoscreen_compare"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    for name in args.run:
        r = run(name, args.minutes, args.epochs, args.manifest, args.work, args.threads)
        results = json.loads(args.results.read_text()) if args.results.exists() else {}
        results[name] = r
        args.results.write_text(json.dumps(results, indent=1) + "\n")
        print(name, json.dumps(r), flush=True)
    if args.table and args.results.exists():
        print(table(json.loads(args.results.read_text())))


if __name__ == "__main__":
    main()
