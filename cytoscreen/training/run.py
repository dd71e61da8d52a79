"""A whole training run as one call: config, CRIC cells by their fixed split, extra labelled
patches (pathologist reviews), training, fp32-vs-bf16 evaluation, checkpoint card, README and
history. ``cytoscreen train`` and ``scripts/train_default_model.py`` are thin wrappers.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cytoscreen.errors import BadManifest, CytoscreenError
from cytoscreen.scoring.card import ModelCard
from cytoscreen.scoring.checkpoint import WEIGHTS_NAME, load_checkpoint, save_checkpoint
from cytoscreen.scoring.infer import Scorer
from cytoscreen.training.card import ATTRIBUTION, BF16_TOLERANCE, THRESHOLD, write_readme
from cytoscreen.training.config import TrainConfig, load_train_config
from cytoscreen.training.data import (
    BACKGROUND,
    Example,
    LabelledPatch,
    category_counts,
    read_cric_manifest,
    split_by_group,
)
from cytoscreen.training.evaluate import positive_scores, render_eval_set, throughput
from cytoscreen.training.loop import train
from cytoscreen.training.metrics import auc_with_ci, category_report, cells_only_auc, sens_spec
from cytoscreen.training.slide_patches import load_slide_patches
from cytoscreen.training.splits import DEFAULT_SPLITS_PATH, apply_splits, load_cell_splits

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "train" / "default.yaml"
DEFAULT_MANIFEST = REPO.parent / "shared" / "data" / "cric" / "manifest.csv"
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


def source_name(path: str | Path) -> str:
    """A path for the card that names no machine's folders: relative to the repository when
    it lies beside it (shared data), else just the file or folder name."""
    p = Path(path).resolve()
    if p.is_relative_to(REPO.parent):
        return os.path.relpath(p, REPO)
    return p.name


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


def label_counts(patches: Sequence[Example], classes: Sequence[str]) -> dict[str, int]:
    counts = Counter(p.label for p in patches)
    return {name: counts.get(i, 0) for i, name in enumerate(classes)}


def load_reviews(
    results_dirs: Sequence[str | Path], cfg: TrainConfig, *, backend: str = "auto"
) -> list[LabelledPatch]:
    """Labelled patches from the review marks of each results folder, at the model's input
    (``cfg.mpp``, ``cfg.patch_px``). A folder with no marks (or only 'unsure') is an error."""
    from cytoscreen.review.marks import DB_NAME
    from cytoscreen.review.results import NotAResultsFolder
    from cytoscreen.review.training import reviewed_patches

    out: list[LabelledPatch] = []
    for results in map(Path, results_dirs):
        if not (results / "slides").is_dir():
            raise NotAResultsFolder("no slides/ folder here", slide=results)
        if not (results / DB_NAME).is_file():
            raise CytoscreenError(
                f"no reviews here ({DB_NAME} is missing)",
                slide=results,
                hint=f"mark fields first with `cytoscreen review {results}`, or drop --reviews",
            )
        patches = reviewed_patches(
            results, model_mpp=cfg.mpp, patch_px=cfg.patch_px, backend=backend
        )
        if not patches:
            raise CytoscreenError(
                "no usable reviews here (no field marked abnormal, normal or artefact)",
                slide=results,
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
            slide=cfg,
            hint="pass --config with a YAML file such as configs/train/default.yaml",
        )
    return load_train_config(cfg)


def _cric_cells(manifest: Path, splits_path: Path) -> dict[str, list[Example]]:
    if not manifest.is_file():
        raise BadManifest(
            "CRIC manifest not found",
            slide=manifest,
            hint="pass --manifest with the manifest.csv of the CRIC crops "
            "(see shared/data/README.md)",
        )
    cric = read_cric_manifest(manifest)
    parts = apply_splits(cric, load_cell_splits(splits_path), source=manifest)
    return {"train": list(parts["train"]), "val": list(parts["val"])}


def _slide_examples(
    cfg: TrainConfig, say: Callable[[str], None]
) -> tuple[list[LabelledPatch], list[LabelledPatch]]:
    """Patches of the configured generated slides, split by slide (group)."""
    if not cfg.slides.manifests:
        return [], []
    patches = load_slide_patches(
        [REPO / m for m in cfg.slides.manifests],
        REPO / cfg.slides.cache_dir,
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


def train_model(
    cfg_path: str | Path | TrainConfig,
    manifest: str | Path,
    splits_path: str | Path = DEFAULT_SPLITS_PATH,
    out_dir: str | Path = REPO / "cytoscreen" / "models" / "default",
    *,
    extra: Sequence[LabelledPatch] = (),
    hold_out_extra: bool = True,
    extra_sources: Sequence[str] = (),
    device: str = "auto",
    progress: bool = True,
    max_mb: float | None = MAX_MB,
    log: Callable[[str], None] | None = print,
) -> TrainOutcome:
    """Train a patch scorer on the CRIC ``train`` cells (+ ``extra``), choose the best epoch on
    ``val`` and write weights, card.json, README.md and history.json to ``out_dir``.

    ``extra`` patches (e.g. from ``reviewed_patches``) are split by their ``group`` (one field
    each): with ``hold_out_extra`` about ``val_fraction`` of the fields go to validation,
    otherwise all train. Inference precision on the card: bf16 + channels_last when its val AUC
    is within ``BF16_TOLERANCE`` of fp32, else fp32. ``progress`` shows the bar; ``log`` gets
    one-line summaries (None: silent). Raises ``CytoscreenError`` naming the file at fault.
    """
    cfg = resolve_config(cfg_path)
    manifest, splits_path, out = Path(manifest), Path(splits_path), Path(out_dir)
    say = log or (lambda _msg: None)
    parts = _cric_cells(manifest, splits_path)
    tr, va = parts["train"], parts["val"]
    rng = random.Random(cfg.seed)
    if cfg.limit_train and len(tr) > cfg.limit_train:
        tr = rng.sample(tr, cfg.limit_train)
    if cfg.limit_val and len(va) > cfg.limit_val:
        va = rng.sample(va, cfg.limit_val)
    if hold_out_extra:
        extra_tr, extra_va = split_extra(extra, cfg.val_fraction, cfg.seed)
    else:
        extra_tr, extra_va = list(extra), []
    n_cric_val = len(va)
    slide_tr, slide_va = _slide_examples(cfg, say)
    tr, va = [*tr, *extra_tr, *slide_tr], [*va, *extra_va, *slide_va]
    # recorded relative to the repository, so the card names no machine's folders
    sources = [source_name(manifest), source_name(splits_path), *extra_sources]
    sources += [f"generated slides: {m}" for m in cfg.slides.manifests]
    say(f"train {len(tr)} ({category_counts(tr)}); val {len(va)} ({category_counts(va)})")

    t0 = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CytoscreenError(
            f"cannot create the output folder ({exc.strerror})",
            slide=out,
            hint="choose another --out or fix the folder's permissions",
        ) from None
    res = train(cfg, tr, va, out, device=device, sources=sources, quiet=not progress)
    train_minutes = (time.perf_counter() - t0) / 60
    images, labels = render_eval_set(va, cfg)
    scores, pps = {}, {}
    for key, prec, cl in (("fp32", "fp32", False), ("bf16", "bf16", True)):
        model, card0 = load_checkpoint(out)
        scorer = Scorer(model, card0, "cpu", prec, channels_last=cl)
        scores[key] = positive_scores(scorer, images)
        pps[key] = throughput(scorer)
    aucs = {k: auc_with_ci(labels, s, seed=cfg.seed) for k, s in scores.items()}
    use_bf16 = abs(aucs["bf16"].value - aucs["fp32"].value) <= BF16_TOLERANCE
    chosen = "bf16" if use_bf16 else "fp32"
    s = scores[chosen]
    validation = {"patch_auc": aucs[chosen], "patch_auc_fp32": aucs["fp32"]}
    validation["patch_auc_bf16_channels_last"] = aucs["bf16"]
    cells = cells_only_auc(labels, [e.category for e in va], s, BACKGROUND, seed=cfg.seed)
    if cells is not None:
        validation["patch_auc_cells"] = cells
    validation.update(sens_spec(labels, s, THRESHOLD))
    if slide_va:  # the CRIC-only figure stays comparable with models trained without slides
        validation["patch_auc_cric_val"] = auc_with_ci(
            labels[:n_cric_val], s[:n_cric_val], seed=cfg.seed
        )
        lo = len(va) - len(slide_va)
        validation["patch_auc_slide_val"] = auc_with_ci(labels[lo:], s[lo:], seed=cfg.seed)
    card: ModelCard = res.card.model_copy(
        update={
            "validation": validation,
            "validation_by_category": category_report(
                labels, [e.category for e in va], s, THRESHOLD, seed=cfg.seed
            ),
            "precision": chosen,
            "memory_format": "channels_last" if use_bf16 else "contiguous",
            "attribution": ATTRIBUTION,
            "notes": (
                f"patch-level metrics on the val cells (never trained on) at score >= {THRESHOLD}"
                f" with {chosen} inference; best epoch {res.best_epoch}/{len(res.history)} by val"
                f" AUC; trained {train_minutes:.1f} min with {res.precision} autocast; throughput"
                f" fp32 {pps['fp32']:.1f}, bf16+channels_last {pps['bf16']:.1f} patches/s on the"
                " 2-core CPU. Research basis, not for clinical use; see README.md."
            ),
        }
    )
    model, _ = load_checkpoint(out)
    card = save_checkpoint(model, card, out)
    figures: dict[str, object] = {
        "train_categories": category_counts(tr),
        "val_categories": category_counts(va),
        "epochs": len(res.history),
        "best_epoch": res.best_epoch,
        "train_minutes": train_minutes,
        "train_precision": res.precision,
        "auc_fp32": aucs["fp32"].value,
        "auc_bf16": aucs["bf16"].value,
        "pps_fp32": pps["fp32"],
        "pps_bf16": pps["bf16"],
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
            slide=out / WEIGHTS_NAME,
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
        lines.append(f"  {k}: {m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}] n={m.n}")
    lines.append(f"  by category: {json.dumps(card.validation_by_category)}")
    if outcome.extra_train or outcome.extra_val:
        lines.append(
            f"  reviewed patches: {outcome.extra_train} trained on, {outcome.extra_val} held out"
            " for validation (whole fields)"
        )
    return lines
