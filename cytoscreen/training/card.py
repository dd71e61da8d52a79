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
    "Trained on CRIC Cervix cell crops (Rezende et al., 'CRIC searchable image database as a "
    "public platform for conventional pap smear cytology data', Scientific Data 8, 151 (2021); "
    "CC BY 4.0 as far as known). ImageNet start (when used) from the efficientnet-lite0-pytorch-"
    "model package (Apache-2.0). CRIC pixel size assumed 0.25 um/px. Research use only."
)
THRESHOLD = 0.5  # fixed before validation: the sampler balances the classes
BF16_TOLERANCE = 0.005


def _fmt(m: Metric) -> str:
    return f"{m.value:.3f} (95% CI {m.ci_low:.3f}-{m.ci_high:.3f}, n={m.n})"


def cells_line(v: Mapping[str, Metric]) -> str:
    """The figure that matters for screening: abnormal cells against NILM cells."""
    m = v.get("patch_auc_cells")
    if m is None:
        return ""
    return (
        f"\n- AUC, cells only (abnormal cells against NILM cells; the background patches, which"
        f"\n  are easy, left out): **{_fmt(m)}** (bootstrap). Nearly every patch of a real slide"
        "\n  holds cells, so this, not the figure above, says how well the model separates what a"
        "\n  screener must separate."
    )


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
            "\n- Patches cut by the tiler (0.5 um/px) from generated slides built only from the"
            " CRIC train cells (scripts/make_training_slides.py); positive = an abnormal cell"
            " centre inside the patch (cells.json truth), patches only touched by an abnormal cell"
            f" left out; split by slide: {extra['slides']}."
        )
    if cfg.init is not None:
        reviews += f"\n- Fine-tuned from the model in `{Path(cfg.init).name}`."
    text = f"""# cytoscreen default patch scorer ({card.arch}, {card.model_id})

**Research basis only, not for clinical use.** This model was trained on a small public dataset
of conventional Pap-smear cells (CRIC Cervix, development subset of 1,437 crops) and has only
been checked on held-out cells of that same dataset, drawn as synthetic slide patches.

## What it does
Scores a {card.preprocessing.input_size[1]}-px RGB patch at {card.mpp} um/px: the output is the
probability that the patch holds at least one abnormal squamous cell (ASC-US or worse). Classes
{card.classes}; positive {card.positive_classes}.

## Training data
- CRIC crops (100 px, pixel size not recorded; assumed 0.25 um/px, so resampled 2x down),
  composited by Beer-Lambert optical density onto procedural slide background, placed
  off-centre, with 0-3 NILM neighbours; near-empty crops (about 40%: mislocated, labels describe
  a missing cell) are used as background negatives, some as empty patches.
- Fixed split by cric_cell_id (data_manifests/cric_splits.json, seed {cfg.seed}, stratified by
  Bethesda class and near-empty): train / val / test; `test` is untouched here.
- Training examples by class: {tc}; by category: {extra["train_categories"]}.
- Validation examples by class: {vc}; by category: {extra["val_categories"]}.{reviews}
- Start: {cfg.pretrained}; {extra["epochs"]} epochs in {extra["train_minutes"]:.1f} min on a
  2-core CPU ({extra["train_precision"]} autocast, channels_last), best epoch
  {extra["best_epoch"]} by val AUC. Augmentation: flips, 90-degree turns, colour/stain, blur,
  JPEG, small scale changes (configs/train/default.yaml). Class balance: weighted sampler.

## Validation (val cells never seen in training; patch level)
- AUC, all val patches: {_fmt(v["patch_auc"])} (bootstrap).{cells_line(v)}
- At the operating point score >= {THRESHOLD} (fixed in advance): sensitivity
  {_fmt(v["sensitivity"])}, specificity {_fmt(v["specificity"])} (exact Clopper-Pearson CIs).

| category | n | flagged | sensitivity / specificity (95% CI) | AUC vs all negatives (95% CI) |
|---|---|---|---|---|
{chr(10).join(rows)}

The operating point and the best epoch were chosen without / on these val cells respectively, so
the AUC is mildly optimistic; counts are small (ASC-US and SCC especially): read the CIs.

## Precision and layout
Inference precision chosen: **{card.precision}**, {card.memory_format}. Val AUC fp32
{auc32:.4f} vs bf16+channels_last {auc16:.4f} (difference {auc16 - auc32:+.4f}; bf16 is used
when within {BF16_TOLERANCE}).
Throughput on the 2-core avx512_bf16 CPU (shared machine): fp32 {extra["pps_fp32"]:.1f}
patches/s, bf16+channels_last {extra["pps_bf16"]:.1f} patches/s.

## Intended use
Development and testing of the cytoscreen pipeline; a starting point for models trained on
real, locally labelled slides and pathologist reviews.

## Not validated for
- clinical use or any diagnostic or screening decision;
- liquid-based preparations from real scanners (only synthetic slides built from conventional
  smear crops), real whole-slide patches of any kind;
- other stains, scanners, objectives or resolutions (0.25 um/px is an assumption);
- AGC and glandular lesions, endometrial cells, organisms, other non-squamous findings;
- slide-level sensitivity/specificity (this card is patch-level only);
- populations, labs and prevalences beyond the CRIC collection.

## Attribution
{card.attribution}

Reproduce: `nice -n 10 .venv/bin/python scripts/train_default_model.py` (seed {cfg.seed}).
"""
    (out / "README.md").write_text(text, encoding="utf-8")
