"""Measure a trained model again on today's validation set and (with --write) record it in its card.

    nice -n 10 .venv/bin/python scripts/revalidate_card.py                # print old and new
    nice -n 10 .venv/bin/python scripts/revalidate_card.py --write        # and rewrite card.json

The validation set is the one ``cytoscreen train`` chooses and reports on
(``training.run.validation_set`` of the training config: the val fields' cells, each inside its
own piece, and windows of virtual val slides), built from today's generator. The bundled model's
card was measured on the pieces of the day it was trained; since then the generator keeps
negative pieces 100 um from every labelled abnormal nucleus (``synth.fields.NEGATIVE_CLEARANCE``),
so the set it chose on no longer exists. This measures the same weights on today's set through
every runtime (``training.runtimes``: PyTorch fp32, bf16 + channels_last, OpenVINO fp32 and,
on a CPU that runs them natively, bf16 and the shipped int8 graph), prints each card figure
before and after, and with ``--write`` replaces the card's ``validation`` block and
per-category report with the new figures and says so in its notes. The weights are not
touched, so the model id and every calibration made with it stay valid. ``scoring.runtime:
auto`` reads the OpenVINO AUCs recorded here (``scoring.engines``).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from cytoscreen.fsutil import write_text_atomic
from cytoscreen.scoring.card import BUNDLED_MODEL_DIR, Metric
from cytoscreen.scoring.checkpoint import CARD_NAME, read_card
from cytoscreen.scoring.engines import card_verdict
from cytoscreen.training.config import load_train_config
from cytoscreen.training.evaluate import CELLS, SLIDES
from cytoscreen.training.run import split_kits, validation_set
from cytoscreen.training.runtimes import measure_runtimes, validation_block

REPO = Path(__file__).resolve().parents[1]


def fmt(m: Metric | None) -> str:
    if m is None or m.value is None or m.ci_low is None or m.ci_high is None:
        return "-"
    return f"{m.value:.4f} [{m.ci_low:.3f}, {m.ci_high:.3f}] n={m.n}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=BUNDLED_MODEL_DIR)
    ap.add_argument("--config", type=Path, default=REPO / "configs/train/default.yaml")
    ap.add_argument("--manifest", type=Path, default=REPO.parent / "shared/data/cric/manifest.csv")
    ap.add_argument("--splits", type=Path, default=REPO / "data_manifests/cric_splits.json")
    ap.add_argument("--write", action="store_true", help="rewrite the card's validation block")
    args = ap.parse_args()

    cfg = load_train_config(args.config)
    kits, _ = split_kits(args.manifest, args.splits, REPO)
    val = validation_set(cfg, kits["val"])
    n_cells, n_windows = int(val.part(CELLS).sum()), int(val.part(SLIDES).sum())
    print(
        f"val set: {len(val)} patches ({n_cells} cells, {n_windows} windows; "
        f"{int(val.labels.sum())} abnormal; {val.skipped_nilm} NILM cells left out)"
    )
    fig = measure_runtimes(args.model, val, cfg.seed)
    validation, by_category = validation_block(val, fig, cfg.seed)
    card = read_card(args.model)
    print(f"\n| figure | card ({card.created[:10]}) | today's val set |\n|---|---|---|")
    for key in dict.fromkeys([*card.validation, *validation]):
        print(f"| {key} | {fmt(card.validation.get(key))} | {fmt(validation.get(key))} |")
    rates = ", ".join(f"{k} {v:.1f}" for k, v in fig.pps.items())
    print(f"\npatches/s (2-core CPU, this run): {rates}")
    print(f"PyTorch inference precision by the card's rule: {fig.chosen} (card: {card.precision})")
    if not args.write:
        print("\n(not written: --write records these in the card)")
        return
    today = dt.date.today().isoformat()
    note = (
        f" Validation re-measured {today} (scripts/revalidate_card.py, same weights) on the val set"
        f" of today's generator: {n_cells} cells and {n_windows} windows ({val.skipped_nilm} NILM"
        " cells left out; negative pieces 100 um from every labelled abnormal nucleus,"
        " synth.fields.NEGATIVE_CLEARANCE); the best epoch was chosen on the earlier set; patches/s"
        f" {rates}."
    )
    new = card.model_copy(
        update={
            "validation": validation,
            "validation_by_category": by_category,
            "precision": fig.chosen,
            "memory_format": "channels_last" if fig.chosen == "bf16" else "contiguous",
            "notes": card.notes.split(" Validation re-measured")[0] + note,
        }
    )
    write_text_atomic(args.model / CARD_NAME, new.model_dump_json(indent=2))
    print(f"\nwrote {args.model / CARD_NAME}")
    for prec in ("fp32", "bf16", "int8"):
        why = card_verdict(new, "openvino", prec)
        print(f"OpenVINO {prec}: " + ("proven for auto" if why is None else f"not proven: {why}"))


if __name__ == "__main__":
    main()
