"""A whole training run as one call: config, CRIC cells by their fixed split, extra labelled
patches (pathologist reviews), training, fp32-vs-bf16 evaluation, checkpoint card, README and
history. ``cytoscreen train`` and ``scripts/train_default_model.py`` are thin wrappers.

Every input is an argument: the training config, the CRIC manifest, the split file and the
output folder (never the bundled model's folder unless ``replace_bundled``). Relative paths in
the config (``slides.manifests``, ``slides.cache_dir``) are taken against ``root`` (default:
the current directory), and the card names the manifest and split file relative to ``root``
when they lie beside it. The command line's defaults for a source checkout live in ``cli.py``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cytoscreen.errors import BadManifest, CytoscreenError, NotAResultsFolder
from cytoscreen.scoring.card import BUNDLED_MODEL_DIR, ModelCard
from cytoscreen.scoring.checkpoint import WEIGHTS_NAME, load_checkpoint, save_checkpoint
from cytoscreen.scoring.engines import FP32_KEY, auc_key
from cytoscreen.scoring.infer import Scorer
from cytoscreen.synth.cric import ImageSplits, load_image_splits, read_cric
from cytoscreen.synth.fields import load_fields
from cytoscreen.synth.kit import ENV_VAR as CRIC_ENV
from cytoscreen.synth.kit import CellKit
from cytoscreen.synth.patches import VirtualSlides
from cytoscreen.training.augment import train_pipeline
from cytoscreen.training.card import ATTRIBUTION, THRESHOLD, write_readme
from cytoscreen.training.config import TrainConfig, load_train_config
from cytoscreen.training.data import (
    LabelledPatch,
    TrainPatches,
    category_counts,
    split_by_group,
)
from cytoscreen.training.evaluate import (
    CELLS,
    SLIDES,
    EvalSet,
    build_eval_set,
    positive_scores,
)
from cytoscreen.training.loop import train
from cytoscreen.training.runtimes import (
    BF16_CL_KEY,
    measure_runtimes,
    validation_block,
)
from cytoscreen.training.slide_patches import load_slide_patches

MAX_MB = 25.0


@dataclass
class TrainOutcome:
    """What a run wrote to ``out_dir`` and the figures behind its card."""

    out_dir: Path
    card: ModelCard
    train_minutes: float
    size_mb: float
    history: list[dict[str, float]]
    extra_train: int = 0  # extra (reviewed) patches trained on
    extra_val: int = 0  # extra patches held out for validation (whole fields)
    figures: dict[str, object] = field(default_factory=dict)  # as written to README.md


def source_name(path: str | Path, root: str | Path | None = None) -> str:
    """A path for the card that names no machine's folders: relative to ``root`` (default the
    current directory: a source checkout's root) when it lies beside it (shared data), else
    just the file or folder name."""
    p = Path(path).resolve()
    base = Path(root if root is not None else Path.cwd()).resolve()
    if p.is_relative_to(base.parent):
        return os.path.relpath(p, base)
    return p.name


def refuse_bundled(out: str | Path, replace_bundled: bool = False) -> None:
    """Stop before anything is read when ``out`` is the bundled model's folder and replacing
    it was not asked for (``--replace-bundled``)."""
    if not replace_bundled and Path(out).resolve() == BUNDLED_MODEL_DIR.resolve():
        raise CytoscreenError(
            "this is the bundled model's folder: training would overwrite the model every "
            "screen uses by default",
            subject=out,
            hint="choose another --out, or pass --replace-bundled to replace the bundled model",
        )


def split_extra(
    patches: Sequence[LabelledPatch], val_fraction: float, seed: int
) -> tuple[list[LabelledPatch], list[LabelledPatch]]:
    """Hold out about ``val_fraction`` of the patches' groups (fields), label-stratified; a
    group is never on both sides. Too few groups or a single label: all of them train."""
    groups = {p.group for p in patches}
    if len(groups) < max(2, round(1.0 / val_fraction)) or len({p.label for p in patches}) < 2:
        return list(patches), []
    tr, va = split_by_group(patches, val_fraction, seed)
    return [p for p in tr if isinstance(p, LabelledPatch)], [
        p for p in va if isinstance(p, LabelledPatch)
    ]


def label_counts(patches: Sequence[LabelledPatch], classes: Sequence[str]) -> dict[str, int]:
    counts = Counter(p.label for p in patches)
    return {name: counts.get(i, 0) for i, name in enumerate(classes)}


def load_reviews(
    results_dirs: Sequence[str | Path], cfg: TrainConfig, *, backend: str = "auto"
) -> list[LabelledPatch]:
    """Labelled patches from the review marks of each results folder, at the model's input
    (``cfg.mpp``, ``cfg.patch_px``). A folder with no marks (or only 'unsure') is an error."""
    from cytoscreen.review.marks import DB_NAME
    from cytoscreen.review.training import reviewed_patches

    out: list[LabelledPatch] = []
    for results in map(Path, results_dirs):
        if not (results / "slides").is_dir():
            raise NotAResultsFolder("no slides/ folder here", subject=results)
        if not (results / DB_NAME).is_file():
            raise CytoscreenError(
                f"no reviews here ({DB_NAME} is missing)",
                subject=results,
                hint=f"mark fields first with `cytoscreen review {results}`, or drop --reviews",
            )
        patches = reviewed_patches(
            results, model_mpp=cfg.mpp, patch_px=cfg.patch_px, backend=backend
        )
        if not patches:
            raise CytoscreenError(
                "no usable reviews here (no field marked abnormal, normal or artefact)",
                subject=results,
                hint=f"mark fields with `cytoscreen review {results}`, or drop --reviews",
            )
        out += patches
    return out


def reviews_summary(patches: Sequence[LabelledPatch], cfg: TrainConfig) -> str:
    """One line: how many reviewed patches (and fields) were added, by label and category."""
    by_label = ", ".join(f"{k} {v}" for k, v in label_counts(patches, cfg.classes).items())
    fields = len({p.group for p in patches})
    return (
        f"reviews: {len(patches)} patches from {fields} fields added ({by_label}; "
        f"by category {category_counts(patches)})"
    )


def resolve_config(cfg: str | Path | TrainConfig) -> TrainConfig:
    """``cfg`` itself, or the training YAML at that path (a missing file is an error)."""
    if isinstance(cfg, TrainConfig):
        return cfg
    if not Path(cfg).is_file():
        raise CytoscreenError(
            "training config not found",
            subject=cfg,
            hint="pass --config with a training YAML file (a source checkout has "
            "configs/train/default.yaml)",
        )
    return load_train_config(cfg)


def split_kits(
    manifest: Path, splits_path: Path, root: str | Path | None = None
) -> tuple[dict[str, CellKit], ImageSplits]:
    """The CRIC fields of each split as a cell kit (train, val, test)."""
    crops = read_cric(manifest)
    splits = load_image_splits(splits_path)
    parts = splits.apply(crops, source=manifest)
    kits = {
        name: CellKit.from_fields(
            load_fields(part), source=f"{source_name(manifest, root)} [{name}]"
        )
        for name, part in parts.items()
    }
    return kits, splits


def _slide_examples(
    cfg: TrainConfig, say: Callable[[str], None], root: Path
) -> tuple[list[LabelledPatch], list[LabelledPatch]]:
    """Patches of the configured generated slides, split by slide (group); the config's
    relative paths are taken against ``root``."""
    if not cfg.slides.manifests:
        return [], []
    patches = load_slide_patches(
        [root / m for m in cfg.slides.manifests],
        root / cfg.slides.cache_dir,
        max_negative=cfg.slides.max_negative,
        seed=cfg.seed,
        mpp=cfg.mpp,
        patch_px=cfg.patch_px,
    )
    if cfg.slides.val_fraction > 0:
        tr, va = split_extra(patches, cfg.slides.val_fraction, cfg.seed)
    else:
        tr, va = list(patches), []
    say(
        f"slides: {len(tr)} patches train {label_counts(tr, cfg.classes)}, {len(va)} val "
        f"{label_counts(va, cfg.classes)}"
    )
    return tr, va


def _extra_eval(patches: Sequence[LabelledPatch], part: str) -> EvalSet:
    return EvalSet(
        images=np.stack([p.image for p in patches]),
        labels=np.array([p.label for p in patches], np.int64),
        categories=tuple(p.category for p in patches),
        parts=(part,) * len(patches),
    )


def _joined(sets: Sequence[EvalSet]) -> EvalSet:
    sets = [s for s in sets if len(s)]
    return EvalSet(
        images=np.concatenate([s.images for s in sets]),
        labels=np.concatenate([s.labels for s in sets]),
        categories=tuple(c for s in sets for c in s.categories),
        parts=tuple(p for s in sets for p in s.parts),
        skipped_nilm=sum(s.skipped_nilm for s in sets),
    )


def hard_negatives(
    cfg: TrainConfig, slides: VirtualSlides, say: Callable[[str], None]
) -> list[LabelledPatch]:
    """The negative windows of the train slides that the starting model (``cfg.init``) scores
    highest: ``context.hard_keep`` of ``context.hard_pool`` drawn (source ``hard``)."""
    ctx = cfg.context
    if not ctx.hard_pool or not ctx.hard_keep:
        return []
    if cfg.init is None:
        raise CytoscreenError(
            "hard negatives need a starting model to find them",
            subject="context.hard_pool",
            hint="set init: to a model folder, or hard_pool: 0",
        )
    rng = np.random.default_rng([cfg.seed, 404])
    windows = [w for w in (slides.negative_window(rng) for _ in range(ctx.hard_pool)) if w]
    scorer = Scorer.load(cfg.init, "cpu", "auto", runtime="auto")
    scores = np.zeros(len(windows), np.float32)
    kept: dict[int, npt.NDArray[np.uint8]] = {}  # the best so far, each window rendered once
    keep = np.zeros(0, np.int64)  # their indices, best first
    step = 256
    for start in range(0, len(windows), step):
        batch = np.stack([slides.render(*w) for w in windows[start : start + step]])
        scores[start : start + step] = positive_scores(scorer, batch)
        keep = np.argsort(-scores[: start + len(batch)], kind="stable")[: ctx.hard_keep]
        kept = {int(i): kept[int(i)] if i < start else batch[int(i) - start].copy() for i in keep}
    say(
        f"hard negatives: kept the {keep.size} of {len(windows)} NILM windows the starting model "
        f"scores highest (scores {float(scores[keep].min()):.3f}-{float(scores[keep].max()):.3f}; "
        f"pool median {float(np.median(scores)):.3f})"
    )
    return [
        LabelledPatch(
            image=kept[i],
            label=0,
            group=f"hard:{int(i)}",
            category="hard_nilm",
            source="hard",
        )
        for i in keep.tolist()
    ]


def validation_set(cfg: TrainConfig, val_kit: CellKit) -> EvalSet:
    """The val fields' cells and virtual-slide windows a model of ``cfg`` is chosen and
    reported on (deterministic: the same for every candidate and for the runtime checks)."""
    ctx = cfg.context
    return build_eval_set(
        val_kit,
        mpp=cfg.mpp,
        patch_px=cfg.patch_px,
        n_slides=ctx.val_slides,
        n_windows=ctx.val_windows,
        n_cells=ctx.n_cells,
        seed=cfg.seed + 1,
        limit_cells=cfg.limit_val,
    )


def train_model(
    cfg_path: str | Path | TrainConfig,
    manifest: str | Path,
    splits_path: str | Path,
    out_dir: str | Path,
    *,
    replace_bundled: bool = False,
    root: str | Path | None = None,
    extra: Sequence[LabelledPatch] = (),
    hold_out_extra: bool = True,
    extra_sources: Sequence[str] = (),
    device: str = "auto",
    progress: bool = True,
    max_mb: float | None = MAX_MB,
    log: Callable[[str], None] | None = print,
) -> TrainOutcome:
    """Train a patch scorer on windows of virtual slides of the CRIC ``train`` fields
    (+ ``extra``), choose the best epoch on the ``val`` fields (cells and slide windows) and
    write weights, card.json, README.md and history.json to ``out_dir``.

    ``extra`` patches (e.g. from ``reviewed_patches``) are split by their ``group`` (one field
    each): with ``hold_out_extra`` about ``val_fraction`` of the fields go to validation,
    otherwise all train; ``cfg.mix`` sets their share of the draws. Inference precision on the
    card: bf16 + channels_last when its val AUC is within ``BF16_TOLERANCE`` of fp32, else
    fp32. ``progress`` shows the bar; ``log`` gets one-line summaries (None: silent). Raises
    ``CytoscreenError`` naming the file at fault. The ``test`` fields are never touched here.
    ``out_dir`` may be the bundled model's folder only with ``replace_bundled``. ``root``
    (default: the current directory) is what the config's relative paths are taken against.
    """
    refuse_bundled(out_dir, replace_bundled)
    cfg = resolve_config(cfg_path)
    manifest, splits_path, out = Path(manifest), Path(splits_path), Path(out_dir)
    base = Path(root) if root is not None else Path.cwd()
    say = log or (lambda _msg: None)
    if not manifest.is_file():
        raise BadManifest(
            "CRIC manifest not found",
            subject=manifest,
            hint="pass --manifest with the manifest.csv of the CRIC crops, or set "
            f"{CRIC_ENV} to their folder (see shared/data/README.md)",
        )
    kits, _ = split_kits(manifest, splits_path, base)
    for name in ("train", "val"):
        k = kits[name]
        say(f"{name}: {len(k.fields)} fields, {len(k)} labelled cells, {len(k.negative)} "
            f"negative pieces, {len(k.units)} abnormal units")  # fmt: skip
    ctx = cfg.context
    slides = VirtualSlides(
        kits["train"],
        n_negative=ctx.n_negative,
        n_positive=ctx.n_positive,
        mpp=cfg.mpp,
        patch_px=cfg.patch_px,
        n_cells=ctx.n_cells,
        n_abnormal=ctx.n_abnormal,
        seed=cfg.seed,
        positive_edge_um=ctx.positive_edge_um,
    )
    if hold_out_extra:
        extra_tr, extra_va = split_extra(extra, cfg.val_fraction, cfg.seed)
    else:
        extra_tr, extra_va = list(extra), []
    slide_tr, slide_va = _slide_examples(cfg, say, base)
    hard = hard_negatives(cfg, slides, say)
    train_ds = TrainPatches(
        slides,
        [*extra_tr, *slide_tr, *hard],
        epoch_size=cfg.epoch_size,
        positive_share=ctx.positive_share,
        mix=cfg.mix,
        transform=train_pipeline(cfg.augment, seed=cfg.seed),
        seed=cfg.seed,
    )
    val = _joined(
        [
            validation_set(cfg, kits["val"]),
            *([_extra_eval(extra_va, "review")] if extra_va else []),
            *([_extra_eval(slide_va, "written_slides")] if slide_va else []),
        ]
    )
    # recorded relative to the root (a source checkout), so the card names no machine's folders
    sources = [source_name(manifest, base), source_name(splits_path, base), *extra_sources]
    sources.append(
        f"virtual slides of the train fields: {ctx.n_negative} negative + {ctx.n_positive} "
        f"positive, {ctx.n_cells} labelled cells each, {ctx.n_abnormal[0]}-{ctx.n_abnormal[1]}"
        " abnormal cells per positive slide"
    )
    sources += [f"generated slides: {m}" for m in cfg.slides.manifests]
    n_pos = round(cfg.epoch_size * ctx.positive_share)
    train_counts = {cfg.classes[0]: cfg.epoch_size - n_pos, cfg.classes[-1]: n_pos}
    say(f"train: {cfg.epoch_size} fresh windows per epoch ({train_counts}) + {len(extra_tr)} "
        f"reviewed and {len(slide_tr)} written-slide patches; val {len(val)} "
        f"({dict(sorted(Counter(val.parts).items()))})")  # fmt: skip

    t0 = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CytoscreenError(
            f"cannot create the output folder ({exc.strerror})",
            subject=out,
            hint="choose another --out or fix the folder's permissions",
        ) from None
    res = train(
        cfg, train_ds, val, out, device=device, sources=sources, train_counts=train_counts,
        quiet=not progress,
    )  # fmt: skip
    train_minutes = (time.perf_counter() - t0) / 60
    fig = measure_runtimes(out, val, cfg.seed)
    chosen = fig.chosen
    validation, by_category = validation_block(val, fig, cfg.seed)
    card: ModelCard = res.card.model_copy(
        update={
            "validation": validation,
            "validation_by_category": by_category,
            "precision": chosen,
            "memory_format": "channels_last" if chosen == "bf16" else "contiguous",
            "attribution": ATTRIBUTION,
            "notes": (
                "patch-level metrics on the val fields (never trained on):"
                f" {int(val.part(CELLS).sum())} cells, each inside its own piece, and"
                f" {int(val.part(SLIDES).sum())} windows of"
                f" {ctx.val_slides} virtual val slides; sensitivity/specificity on the cells at"
                f" score >= {THRESHOLD} with {chosen} inference; {val.skipped_nilm} NILM cells"
                " left out (an abnormal nucleus in view); best epoch"
                f" {res.best_epoch}/{len(res.history)} by the mean AUC of cells and windows;"
                f" trained {train_minutes:.1f} min with {res.precision} autocast; throughput"
                f" fp32 {fig.pps['fp32']:.1f}, bf16+channels_last {fig.pps['bf16']:.1f} patches/s"
                " on the 2-core CPU. Research basis, not for clinical use; see README.md."
            ),
        }
    )
    model, _ = load_checkpoint(out)
    card = save_checkpoint(model, card, out)
    figures: dict[str, object] = {
        "train_fields": len(kits["train"].fields),
        "val_fields": len(kits["val"].fields),
        "train_cells": len(kits["train"]),
        "val_categories": dict(sorted(Counter(val.categories).items())),
        "skipped_nilm": val.skipped_nilm,
        "epochs": len(res.history),
        "best_epoch": res.best_epoch,
        "train_minutes": train_minutes,
        "train_precision": res.precision,
        "auc_fp32": fig.aucs[FP32_KEY].value,
        "auc_bf16": fig.aucs[BF16_CL_KEY].value,
        "pps_fp32": fig.pps["fp32"],
        "pps_bf16": fig.pps["bf16"],
        "pps_openvino": fig.pps.get("openvino_fp32"),
        "auc_openvino": (m := fig.aucs.get(auc_key("openvino", "fp32"))) and m.value,
        "pps_openvino_bf16": fig.pps.get("openvino_bf16"),
        "auc_openvino_bf16": (b := fig.aucs.get(auc_key("openvino", "bf16"))) and b.value,
    }
    if slide_tr or slide_va:
        figures["slides"] = (
            f"{len(slide_tr)} patches from {len({p.group for p in slide_tr})} generated slides"
            f" trained on {label_counts(slide_tr, cfg.classes)}, {len(slide_va)} from "
            f"{len({p.group for p in slide_va})} other slides held out"
            f" {label_counts(slide_va, cfg.classes)}"
        )
    if extra:
        figures["reviews"] = (
            f"{len(extra_tr)} patches trained on {label_counts(extra_tr, cfg.classes)}, "
            f"{len(extra_va)} held out for validation {label_counts(extra_va, cfg.classes)}"
        )
    write_readme(out, card, cfg, figures)
    (out / "history.json").write_text(json.dumps(res.history, indent=1) + "\n")
    size_mb = (out / WEIGHTS_NAME).stat().st_size / 1e6
    if max_mb is not None and size_mb > max_mb:
        raise CytoscreenError(
            f"weights are {size_mb:.1f} MB, over {max_mb} MB",
            subject=out / WEIGHTS_NAME,
            hint="choose a smaller arch in the training config",
        )
    return TrainOutcome(
        out, card, train_minutes, size_mb, res.history, len(extra_tr), len(extra_va), figures
    )


def summary_lines(outcome: TrainOutcome) -> list[str]:
    """What a run prints at the end: model, size, validation metrics, per-category report."""
    card = outcome.card
    lines = [
        f"model {card.model_id}: {outcome.size_mb:.1f} MB -> {outcome.out_dir}"
        f" ({outcome.train_minutes:.1f} min)"
    ]
    for k, m in card.validation.items():
        lines.append(f"  {k}: {m.text(brackets=True)}")
    lines.append(f"  by category: {json.dumps(card.validation_by_category)}")
    if outcome.extra_train or outcome.extra_val:
        lines.append(
            f"  reviewed patches: {outcome.extra_train} trained on, {outcome.extra_val} held out"
            " for validation (whole fields)"
        )
    return lines
