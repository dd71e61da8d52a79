"""Measure the cells-only validation AUC of an existing checkpoint and add it to its card.

    .venv/bin/python scripts/add_cells_auc.py cytoscreen/models/default

The cells-only AUC (abnormal cells against NILM cells, near-empty "background" crops left out)
is what screening needs: nearly every patch of a slide holds cells. Models trained since it was
added to ``cytoscreen train`` carry it already; this measures it for an older checkpoint on the
same validation cells its card describes (the ``val`` cells of data_manifests/cric_splits.json,
rendered exactly as training's evaluation renders them), at the card's chosen precision, and
writes it into card.json (``validation.patch_auc_cells``) and README.md. The weights are not
touched, so the model id does not change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cytoscreen.fsutil import write_text_atomic
from cytoscreen.scoring.checkpoint import CARD_NAME, load_checkpoint
from cytoscreen.scoring.infer import Scorer
from cytoscreen.training.card import cells_line
from cytoscreen.training.config import load_train_config
from cytoscreen.training.data import BACKGROUND, read_cric_manifest
from cytoscreen.training.evaluate import positive_scores, render_eval_set
from cytoscreen.training.metrics import cells_only_auc
from cytoscreen.training.splits import apply_splits, load_cell_splits

REPO = Path(__file__).resolve().parents[1]
ANCHOR = " (bootstrap).\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--manifest", type=Path, default=REPO.parent / "shared/data/cric/manifest.csv")
    ap.add_argument("--train-config", type=Path, default=REPO / "configs/train/default.yaml")
    args = ap.parse_args()
    model, card = load_checkpoint(args.model_dir)
    cfg = load_train_config(args.train_config, seed=0)
    val = apply_splits(read_cric_manifest(args.manifest), load_cell_splits(), source=args.manifest)[
        "val"
    ]
    if len(val) != card.validation["patch_auc"].n:
        raise SystemExit(
            f"{len(val)} val examples here, the card's AUC used {card.validation['patch_auc'].n}:"
            " not the data the card describes"
        )
    images, labels = render_eval_set(val, cfg)
    scorer = Scorer(model, card, "cpu", card.precision, card.memory_format == "channels_last")
    scores = positive_scores(scorer, images)
    m = cells_only_auc(labels, [e.category for e in val], scores, BACKGROUND, seed=cfg.seed)
    if m is None:
        raise SystemExit("validation has no NILM or no abnormal cell")
    print(f"cells-only AUC {m.value:.4f} [{m.ci_low:.4f}, {m.ci_high:.4f}] n={m.n}")
    validation = {**card.validation, "patch_auc_cells": m}
    card = card.model_copy(update={"validation": validation})
    write_text_atomic(args.model_dir / CARD_NAME, card.model_dump_json(indent=2))
    readme = args.model_dir / "README.md"
    text = readme.read_text(encoding="utf-8")
    if "AUC, cells only" not in text:
        head, sep, tail = text.partition(ANCHOR)
        if not sep:
            raise SystemExit(f"{readme}: no AUC line to add the figure after")
        write_text_atomic(readme, head + " (bootstrap)." + cells_line(validation) + "\n" + tail)


if __name__ == "__main__":
    main()
