"""Quantise a trained model to an int8 OpenVINO graph, ship it beside the weights, record its AUC.

    nice -n 10 .venv/bin/python scripts/quantize_int8.py                      # the bundled model
    nice -n 10 .venv/bin/python scripts/quantize_int8.py --model DIR --calib 600

NNCF post-training quantisation (``training.quantize``) calibrated on ``--calib`` windows of
virtual slides of the *train* fields (never val or test), written as
``openvino_int8.xml``/``.bin`` + ``openvino_int8.json`` in the model folder. Then the val set
the card reports on (``training.run.validation_set``) is scored through the shipped graph (the
Scorer's int8 path) and through PyTorch fp32; the AUC of each is printed, and the int8 AUC is
written into the card as ``patch_auc_openvino_int8`` when the PyTorch fp32 AUC measured here is
the card's own (the same validation set). ``scoring.precision: int8`` scores with the graph;
slides are called negative only with a calibration of int8 scores (``calibration.int8.json``,
``scripts/calibrate_default_model.py --precision int8``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cytoscreen.fsutil import write_text_atomic
from cytoscreen.scoring import openvino_engine
from cytoscreen.scoring.card import BUNDLED_MODEL_DIR
from cytoscreen.scoring.checkpoint import CARD_NAME, read_card
from cytoscreen.scoring.engines import FP32_KEY, auc_key, card_verdict
from cytoscreen.scoring.infer import Scorer
from cytoscreen.training.config import load_train_config
from cytoscreen.training.evaluate import CELLS, positive_scores, throughput
from cytoscreen.training.metrics import auc_with_ci
from cytoscreen.training.quantize import calibration_windows, quantize_int8
from cytoscreen.training.run import split_kits, validation_set

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=BUNDLED_MODEL_DIR)
    ap.add_argument("--config", type=Path, default=REPO / "configs/train/default.yaml")
    ap.add_argument("--manifest", type=Path, default=REPO.parent / "shared/data/cric/manifest.csv")
    ap.add_argument("--splits", type=Path, default=REPO / "data_manifests/cric_splits.json")
    ap.add_argument("--calib", type=int, default=600, help="train windows to calibrate on")
    ap.add_argument("--fast-bias-correction", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cfg = load_train_config(args.config)
    kits, _ = split_kits(args.manifest, args.splits, REPO)
    calib, what = calibration_windows(kits["train"], cfg, args.calib, args.seed)
    source = f"{what} of {args.splits.name}"
    record = quantize_int8(
        args.model, calib, source=source, full_bias_correction=not args.fast_bias_correction
    )
    print(f"wrote {record} and the graph beside it")

    val = validation_set(cfg, kits["val"])
    fp32 = Scorer.load(args.model, "cpu", "fp32", channels_last=False)
    int8 = Scorer.load(args.model, "cpu", "int8", runtime="openvino")
    s32, s8 = positive_scores(fp32, val.images), positive_scores(int8, val.images)
    m32 = auc_with_ci(val.labels, s32, seed=cfg.seed)
    method = (
        f"bootstrap; OpenVINO {openvino_engine.version()} int8 (shipped graph) through the Scorer"
    )
    m8 = auc_with_ci(val.labels, s8, seed=cfg.seed).model_copy(update={"method": method})
    cells = val.part(CELLS)
    c8 = auc_with_ci(val.labels[cells], s8[cells], seed=cfg.seed)
    print(
        f"val set {len(val)} patches: PyTorch fp32 AUC {m32.text(brackets=True)}; OpenVINO int8 "
        f"{m8.text(brackets=True)} (cells only {c8.text(brackets=True)}); largest patch change "
        f"{float(np.abs(s8 - s32).max()):.3f}; int8 {throughput(int8):.1f} patches/s"
    )
    card = read_card(args.model)
    ref = card.validation.get(FP32_KEY)
    if ref is None or ref.n != m32.n or abs((ref.value or 0) - (m32.value or 0)) > 1e-6:
        print(f"not recorded: the card's {FP32_KEY} ({ref}) is not the AUC measured here")
        return
    card = card.model_copy(
        update={"validation": {**card.validation, auc_key("openvino", "int8"): m8}}
    )
    write_text_atomic(args.model / CARD_NAME, card.model_dump_json(indent=2))
    why = card_verdict(card, "openvino", "int8")
    print(f"recorded {auc_key('openvino', 'int8')} in {args.model / CARD_NAME}: "
          + ("within the tolerance of fp32" if why is None else why))  # fmt: skip


if __name__ == "__main__":
    main()
