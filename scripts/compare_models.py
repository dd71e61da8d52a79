"""Compare candidate patch scorers with short training runs of equal budget, chosen on val.

    nice -n 10 .venv/bin/python scripts/compare_models.py --run lite0_imagenet_050 --epochs 4
    .venv/bin/python scripts/compare_models.py --table          # markdown table of the results

Each run trains on windows of virtual slides of the CRIC ``train`` fields (split by image,
data_manifests/cric_splits.json) with the default training config, overriding architecture,
start, learning rate and resolution, and the same number of epochs of the same size for every
candidate (a time budget would favour whichever ran on a quieter machine). It then measures on
the ``val`` fields: the cells-only AUC (each labelled cell in its own piece: abnormal against
NILM), the AUC on windows of virtual val slides, both with bootstrap 95% CIs, for fp32 and
bf16 + channels_last inference, and inference patches/s. A model at 0.25 um/px scores four
times as many patches per slide as one at 0.5 um/px: the table gives patches/s and the
relative cost per slide area. Results are merged into cytoscreen/models/comparison.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cytoscreen.training.config import load_train_config
from cytoscreen.training.run import train_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "cytoscreen/models/comparison.json"
DEFAULT_SPLITS_PATH = REPO / "data_manifests" / "cric_splits.json"
# name -> (timm architecture, start, learning rate, um/px, global pooling)
CANDIDATES: dict[str, tuple[str, str, float, float, str]] = {
    "lite0_imagenet_050": ("efficientnet_lite0", "imagenet", 5e-4, 0.5, "avg"),
    "lite0_imagenet_025": ("efficientnet_lite0", "imagenet", 5e-4, 0.25, "avg"),
    "lite0_imagenet_050_max": ("efficientnet_lite0", "imagenet", 5e-4, 0.5, "max"),
    "mnv3_scratch_050": ("mobilenetv3_large_100", "none", 1e-3, 0.5, "avg"),
    "mnv3_scratch_025": ("mobilenetv3_large_100", "none", 1e-3, 0.25, "avg"),
    "resnet18_scratch_050": ("resnet18", "none", 1e-3, 0.5, "avg"),
    "resnet18_scratch_025": ("resnet18", "none", 1e-3, 0.25, "avg"),
}


def _m(metric: object) -> list[float]:
    v = metric  # a scoring.card.Metric
    return [round(v.value, 4), round(v.ci_low, 4), round(v.ci_high, 4)]  # type: ignore[attr-defined]


def run(name: str, epochs: int, epoch_size: int, manifest: Path, work: Path) -> dict[str, object]:
    arch, start, lr, mpp, pool = CANDIDATES[name]
    torch.set_num_threads(2)
    cfg = load_train_config(
        REPO / "configs/train/default.yaml",
        arch=arch,
        pretrained=start,
        lr=lr,
        mpp=mpp,
        global_pool=pool,
        epochs=epochs,
        epoch_size=epoch_size,
        max_minutes=None,
    )
    t0 = time.perf_counter()
    outcome = train_model(
        cfg, manifest, DEFAULT_SPLITS_PATH, work / name, root=REPO, device="cpu", progress=False,
        log=None, max_mb=None,  # a candidate is measured, not shipped: no size limit here
    )  # fmt: skip
    v = outcome.card.validation
    f = outcome.figures
    return {
        "arch": arch,
        "start": start,
        "lr": lr,
        "mpp": mpp,
        "global_pool": pool,
        "epochs": len(outcome.history),
        "epoch_size": epoch_size,
        "best_epoch": f["best_epoch"],
        "train_s": round(time.perf_counter() - t0, 1),
        "train_precision": f["train_precision"],
        "params_m": round(outcome.size_mb / 4.0, 2),  # fp32 weights: 4 bytes a parameter
        "auc_cells": _m(v["patch_auc_cells"]),
        "auc_slides": _m(v["patch_auc_slides"]),
        "auc_fp32": _m(v["patch_auc_fp32"]),
        "auc_bf16_cl": _m(v["patch_auc_bf16_channels_last"]),
        "precision": outcome.card.precision,
        "n_val_cells": v["patch_auc_cells"].n,
        "n_val_windows": v["patch_auc_slides"].n,
        "pps_fp32": round(float(f["pps_fp32"]), 1),  # type: ignore[arg-type]
        "pps_bf16_cl": round(float(f["pps_bf16"]), 1),  # type: ignore[arg-type]
        "history": outcome.history,
    }


def _ci(v: object) -> str:
    if not isinstance(v, list):
        return "not measured"
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def table(results: dict[str, dict[str, object]]) -> str:
    head = (
        "| candidate | arch | start | um/px | pool | epochs (best) | cells-only AUC [95% CI] "
        "| slide-window AUC [95% CI] | AUC fp32 / bf16+CL (all val) | patches/s fp32 / bf16+CL "
        "| cost per mm^2 (x lite0 0.5) |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    ref = results.get("lite0_imagenet_050")
    rows = []
    for name, r in results.items():
        if "auc_cells" not in r:
            continue  # an entry from before the corrected crops
        a, b = r["auc_fp32"], r["auc_bf16_cl"]
        assert isinstance(a, list) and isinstance(b, list)
        per_mm2 = (0.5 / float(r["mpp"])) ** 2 / float(r["pps_bf16_cl"])  # type: ignore[arg-type]
        cost = (
            f"{per_mm2 / (1.0 / float(ref['pps_bf16_cl'])):.2f}"  # type: ignore[arg-type]
            if ref
            else "-"
        )
        rows.append(
            f"| {name} | {r['arch']} | {r['start']} | {r['mpp']} | {r.get('global_pool', 'avg')} "
            f"| {r['epochs']} "
            f"({r['best_epoch']}) | {_ci(r['auc_cells'])} | {_ci(r['auc_slides'])} "
            f"| {a[0]:.3f} / {b[0]:.3f} | {r['pps_fp32']} / {r['pps_bf16_cl']} | {cost} |"
        )
    return head + "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", nargs="*", choices=sorted(CANDIDATES), default=[])
    ap.add_argument("--epochs", type=int, default=4, help="epochs per run (equal for all)")
    ap.add_argument("--epoch-size", type=int, default=1500, help="windows per epoch")
    ap.add_argument("--manifest", type=Path, default=REPO.parent / "shared/data/cric/manifest.csv")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cytoscreen_compare"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    for name in args.run:
        r = run(name, args.epochs, args.epoch_size, args.manifest, args.work)
        results = json.loads(args.results.read_text()) if args.results.exists() else {}
        results = {k: v for k, v in results.items() if "auc_cells" in v}  # void: old crops
        results[name] = r
        args.results.write_text(json.dumps(results, indent=1) + "\n")
        print(name, json.dumps({k: v for k, v in r.items() if k != "history"}), flush=True)
    if args.table and args.results.exists():
        print(table(json.loads(args.results.read_text())))


if __name__ == "__main__":
    main()
