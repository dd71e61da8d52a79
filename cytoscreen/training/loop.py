"""The training loop: seeded, class-balanced, best checkpoint by validation AUC."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cytoscreen.scoring.card import ModelCard, TrainingData
from cytoscreen.scoring.checkpoint import load_checkpoint, save_checkpoint
from cytoscreen.scoring.model import create_model, new_card
from cytoscreen.scoring.pretrained import LITE0_ARCHS, load_lite0_imagenet
from cytoscreen.scoring.runtime import Normaliser, autocast, resolve_device
from cytoscreen.training.config import TrainConfig
from cytoscreen.training.data import TrainPatches, class_counts
from cytoscreen.training.evaluate import EvalSet
from cytoscreen.training.metrics import auc


@dataclass
class TrainResult:
    model_dir: Path
    card: ModelCard
    best_auc: float
    best_epoch: int
    precision: str = "fp32"  # training precision used
    history: list[dict[str, float]] = field(default_factory=list)
    val_scores: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def train_precision(cfg: TrainConfig, device: torch.device) -> str:
    """'auto': bf16 AMP on CUDA where supported (else fp16); on CPU bf16 autocast when the CPU
    has native bf16 (avx512_bf16 or AMX): measured ~5x fp32 for efficientnet_lite0 training
    on the project's 2-core avx512_bf16 machine; otherwise fp32."""
    if cfg.precision != "auto":
        return cfg.precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if _cpu_flags() & {"avx512_bf16", "amx_bf16"} else "fp32"


def progress_fraction(step: int, total_steps: int, elapsed_s: float, cfg: TrainConfig) -> float:
    """How far training is: the larger of steps done and time used (when there is a budget)."""
    done = step / max(total_steps, 1)
    if cfg.max_minutes is not None:
        done = max(done, elapsed_s / (60.0 * cfg.max_minutes))
    return done


def one_cycle_lr(done: float, max_lr: float, warmup: float = 0.15) -> float:
    """Linear warm-up to ``max_lr`` over ``warmup``, then cosine down to ~0 at ``done`` = 1.

    Driven by progress rather than a step count, so time-budgeted runs anneal fully too.
    """
    if done < warmup:
        return max_lr * (0.04 + 0.96 * done / warmup)
    t = min(1.0, (done - warmup) / (1.0 - warmup))
    return max_lr * (0.5 + 0.5 * float(np.cos(np.pi * t))) + max_lr * 1e-3


def classifier_of(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The timm model's final linear classifier, if it has one."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    return head if isinstance(head, torch.nn.Linear) else None


def reset_head(model: torch.nn.Module, std: float = 0.01) -> None:
    """Small fresh classifier weights. timm's EfficientNet/MobileNet init scales the head by
    1/sqrt(num_classes): with 2 classes the first logits are ~10 and the first losses ~4, which
    wrecks the pretrained features in the first steps."""
    head = classifier_of(model)
    if head is not None:
        torch.nn.init.normal_(head.weight, std=std)
        torch.nn.init.zeros_(head.bias)


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    if cfg.init is not None:  # fine-tune a trained model: keep its head too
        model, card = load_checkpoint(cfg.init)
        if card.arch != cfg.arch or list(card.classes) != list(cfg.classes):
            raise ValueError(
                f"init model {cfg.init} is {card.arch} {card.classes}, config wants "
                f"{cfg.arch} {cfg.classes}"
            )
        return model
    model = create_model(cfg.arch, len(cfg.classes), cfg.global_pool)
    if cfg.pretrained == "imagenet":
        if cfg.arch not in LITE0_ARCHS:
            raise ValueError(f"offline ImageNet weights exist only for {LITE0_ARCHS}")
        load_lite0_imagenet(model)
    reset_head(model)
    return model


def selection_auc(val: EvalSet, scores: npt.NDArray[np.float32]) -> tuple[float, dict[str, float]]:
    """The figure epochs are chosen by: the mean of the AUCs of the eval set's parts (cells
    and slide windows), so neither the easy cells nor the crowded windows dominate."""
    parts = {}
    for name in sorted(set(val.parts)):
        m = val.part(name)
        parts[name] = auc(val.labels[m], scores[m])
    finite = [v for v in parts.values() if np.isfinite(v)]
    return (float(np.mean(finite)) if finite else float("nan")), parts


def _batches(images: npt.NDArray[np.uint8], batch: int) -> list[torch.Tensor]:
    return [
        torch.from_numpy(np.ascontiguousarray(images[i : i + batch])).permute(0, 3, 1, 2)
        for i in range(0, len(images), batch)
    ]


def predict(
    model: torch.nn.Module,
    batches: list[torch.Tensor],
    norm: Normaliser,
    device: torch.device,
    precision: str,
    positive: list[int],
) -> npt.NDArray[np.float32]:
    model.eval()
    out = []
    with torch.inference_mode():
        for x in batches:
            with autocast(device, precision):  # type: ignore[arg-type]
                logits = model(norm(x.permute(0, 2, 3, 1)))
            out.append(torch.softmax(logits.float(), 1)[:, positive].sum(1).cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def train(
    cfg: TrainConfig,
    train_ds: TrainPatches,
    val: EvalSet,
    out_dir: str | Path,
    *,
    device: str = "auto",
    sources: Sequence[str] = (),
    train_counts: dict[str, int] | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Train, evaluate on ``val`` after every epoch, keep the best checkpoint in ``out_dir``
    (best = highest ``selection_auc``)."""
    out = Path(out_dir)
    gen = seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = resolve_device(device)
    precision = train_precision(cfg, dev)
    model = build_model(cfg).to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    card = new_card(
        model,
        cfg.arch,
        list(cfg.classes),
        list(cfg.positive_classes),
        input_px=cfg.patch_px,
        mpp=cfg.mpp,
        global_pool=cfg.global_pool,
        training=TrainingData(
            sources=list(sources),
            counts=train_counts or {},
            validation_counts=class_counts(val.labels.tolist(), cfg.classes),
        ),
        precision="fp32",
        memory_format="channels_last" if cfg.channels_last else "contiguous",
    )
    norm = Normaliser(card.preprocessing, dev, cfg.channels_last)
    train_loader = torch.utils.data.DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        shuffle=False,
        generator=gen,
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
        drop_last=False,
    )
    val_batches = _batches(val.images, cfg.batch_size)
    positive = card.positive_indices()
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * max(len(train_loader), 1)
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda" and precision == "fp16")
    result = TrainResult(out, card, float("-inf"), -1, precision)
    t_start = time.perf_counter()
    step = 0
    columns = (
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("val AUC {task.fields[auc]}"),
        TimeElapsedColumn(),
    )
    scores = np.zeros(0, np.float32)
    with Progress(*columns, disable=quiet, transient=False) as progress:
        for epoch in range(cfg.epochs):
            task = progress.add_task(
                "train", total=len(train_loader), epoch=epoch + 1, loss=0.0, auc="-"
            )
            model.train()
            total, seen = 0.0, 0
            for x, y in train_loader:
                done = progress_fraction(step, total_steps, time.perf_counter() - t_start, cfg)
                if done >= 1.0:
                    break
                for group in opt.param_groups:
                    group["lr"] = one_cycle_lr(done, cfg.lr)
                step += 1
                xb, yb = norm(x.permute(0, 2, 3, 1)), y.to(dev)
                with autocast(dev, precision):  # type: ignore[arg-type]
                    loss = loss_fn(model(xb).float(), yb)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total += float(loss.detach()) * len(y)
                seen += len(y)
                progress.update(task, advance=1, loss=total / max(seen, 1))
            scores = predict(model, val_batches, norm, dev, precision, positive)
            val_auc, parts = selection_auc(val, scores)
            progress.update(task, auc=f"{val_auc:.4f}")
            result.history.append(
                {
                    "epoch": epoch + 1,
                    "loss": total / max(seen, 1),
                    "val_auc": val_auc,
                    **{f"val_auc_{k}": v for k, v in parts.items()},
                    "minutes": (time.perf_counter() - t_start) / 60,
                }
            )
            if np.isfinite(val_auc) and val_auc > result.best_auc:
                result.best_auc, result.best_epoch = val_auc, epoch + 1
                result.card = save_checkpoint(model, card, out)
                result.val_scores = scores
            if progress_fraction(step, total_steps, time.perf_counter() - t_start, cfg) >= 1.0:
                break
    if result.best_epoch < 0:  # validation never had both classes: keep the last weights
        result.card = save_checkpoint(model, card, out)
        result.val_scores = scores
    return result
