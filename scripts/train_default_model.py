"""Train the bundled default patch scorer on windows of virtual slides of the CRIC train fields.

    nice -n 10 .venv/bin/python scripts/train_default_model.py          # full run (< 1 h, 2 cores)
    .venv/bin/python scripts/train_default_model.py --config configs/train/smoke.yaml \
        --out /tmp/smoke_model                                         # ~1-minute smoke run

Fields come from the fixed split file (data_manifests/cric_splits.json, by CRIC image; write a
new one with ``cytoscreen make-splits``): the model trains on ``train``, the best epoch is chosen
on ``val`` (cells-only AUC and virtual-slide windows) and the card reports ``val``; ``test`` is
never touched here. Inference precision: bf16 + channels_last when its val AUC is within 0.005
of fp32, else fp32. Optional extra labelled patches (pathologist reviews): an .npz with images
(N,H,W,3) uint8, labels (N,) int and groups (N,) str, added to training (``mix: {review: x}``
in the config sets their share).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cytoscreen.errors import CytoscreenError
from cytoscreen.scoring.checkpoint import CARD_NAME
from cytoscreen.training.data import LabelledPatch
from cytoscreen.training.run import summary_lines, train_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "train" / "default.yaml"
DEFAULT_MANIFEST = REPO.parent / "shared" / "data" / "cric" / "manifest.csv"
DEFAULT_SPLITS_PATH = REPO / "data_manifests" / "cric_splits.json"
BUNDLED = REPO / "cytoscreen" / "models" / "default"


def _extra(path: Path) -> list[LabelledPatch]:
    data = np.load(path, allow_pickle=False)
    return [
        LabelledPatch(img, int(lab), group=str(g), category=f"extra:{int(lab)}", source="review")
        for img, lab, g in zip(data["images"], data["labels"], data["groups"], strict=True)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    ap.add_argument("--splits", type=Path, default=DEFAULT_SPLITS_PATH)
    ap.add_argument("--extra-npz", type=Path, default=None)
    # this script exists to remake the bundled model: its folder is the default
    ap.add_argument("--out", type=Path, default=BUNDLED)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    try:
        outcome = train_model(
            args.config,
            args.manifest,
            args.splits,
            args.out,
            replace_bundled=args.out.resolve() == BUNDLED.resolve(),
            root=REPO,
            extra=_extra(args.extra_npz) if args.extra_npz else (),
            hold_out_extra=False,  # the .npz patches are all training data
            extra_sources=[str(args.extra_npz)] if args.extra_npz else (),
            device=args.device,
        )
    except CytoscreenError as err:
        raise SystemExit(f"error: {err}") from None
    for line in summary_lines(outcome):
        print(line)
    print(f"card: {args.out / CARD_NAME}")


if __name__ == "__main__":
    main()
