from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cytoscreen.errors import BadManifest, ConfigError, CytoscreenError
from cytoscreen.scoring.card import CARD_NAME, ModelCard, Preprocessing, read_card
from cytoscreen.scoring.checkpoint import load_checkpoint
from cytoscreen.synth import bundled_kit
from cytoscreen.synth.patches import VirtualSlides
from cytoscreen.training.augment import train_pipeline
from cytoscreen.training.config import TrainConfig, load_train_config
from cytoscreen.training.data import LabelledPatch, TrainPatches, split_by_group
from cytoscreen.training.evaluate import EvalSet
from cytoscreen.training.loop import selection_auc, train
from cytoscreen.training.metrics import auc_with_ci, proportion, sens_spec

REPO = Path(__file__).resolve().parents[2]


def background_rgb(px: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(235 + rng.normal(0, 3, (px, px, 3)), 0, 255).astype(np.uint8)


def _blob_patches(n: int, px: int, seed: int, groups_per: int = 1) -> list[LabelledPatch]:
    """Label 1 patches carry a dark disc; label 0 patches are plain background."""
    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[0:px, 0:px]
    for i in range(n):
        img = background_rgb(px, rng)
        label = int(i % 3 == 0)
        if label:
            cy, cx = rng.integers(px // 4, px - px // 4 + 1, 2)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < (px // 6) ** 2] = (60, 40, 110)
        out.append(LabelledPatch(img, label, group=f"g{i // groups_per}", category=str(label)))
    return out


def test_config_files_validate_and_unknown_keys_fail(tmp_path: Path) -> None:
    for name in ("default.yaml", "smoke.yaml"):
        load_train_config(REPO / "configs" / "train" / name)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"epochs": 1, "augment": {"hflipp": 0.5}}))
    with pytest.raises(ConfigError, match="hflipp"):
        load_train_config(bad)


def test_augment_pipeline_changes_pixels_but_keeps_shape() -> None:
    pipe = train_pipeline(TrainConfig().augment, seed=3)
    img = background_rgb(64, np.random.default_rng(0))
    img[10:20, 30:40] = 0
    outs = [pipe(image=img)["image"] for _ in range(4)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(o, img) for o in outs)


def test_split_keeps_each_group_on_one_side() -> None:
    ex = _blob_patches(120, 16, 0, groups_per=3)
    tr, va = split_by_group(ex, 0.25, seed=1)
    assert {e.group for e in tr}.isdisjoint({e.group for e in va})
    assert len(tr) + len(va) == 120 and 0.15 < len(va) / 120 < 0.35
    assert {e.label for e in va} == {0, 1}


def test_train_patches_draw_the_positive_share_and_the_mix() -> None:
    vs = VirtualSlides(
        bundled_kit(), n_negative=1, n_positive=1, mpp=0.5, patch_px=32, n_cells=150,
        n_abnormal=(3, 5), seed=0,
    )  # fmt: skip
    ds = TrainPatches(vs, epoch_size=200, positive_share=0.3, seed=1)
    labels = [ds[i][1] for i in range(200)]
    assert 0.2 < float(np.mean(labels)) < 0.4
    x, _ = ds[0]
    assert tuple(x.shape) == (3, 32, 32) and x.dtype == torch.uint8
    extra = _blob_patches(30, 32, 0)
    mixed = TrainPatches(vs, extra, epoch_size=300, mix={"review": 0.5}, seed=2)
    rng = np.random.default_rng(0)
    draws = [mixed.draw(rng)[0] for _ in range(300)]
    from_extra = sum(any(img is e.image for e in extra) for img in draws)
    assert 110 < from_extra < 190
    with pytest.raises(BadManifest, match="expected"):
        TrainPatches(vs, _blob_patches(3, 16, 0), epoch_size=10, mix={"review": 0.5})


def test_selection_auc_is_the_mean_over_the_parts() -> None:
    val = EvalSet(
        images=np.zeros((8, 4, 4, 3), np.uint8),
        labels=np.array([0, 1, 0, 1, 0, 1, 0, 1]),
        categories=("x",) * 8,
        parts=("cells",) * 4 + ("slides",) * 4,
    )
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.8, 0.2], np.float32)
    mean, parts = selection_auc(val, scores)
    assert parts == {"cells": 1.0, "slides": 0.0} and mean == 0.5


def test_metrics_intervals_contain_value() -> None:
    y = np.r_[np.ones(50), np.zeros(50)]
    s = np.r_[np.linspace(0.3, 1, 50), np.linspace(0, 0.7, 50)]
    m = auc_with_ci(y, s, n_boot=200)
    assert m.ci_low < m.value < m.ci_high and 0.8 < m.value < 1.0
    p = proportion(45, 50)
    assert p.value == 0.9 and p.ci_low < 0.9 < p.ci_high
    ss = sens_spec(y, s, 0.5)
    assert ss["sensitivity"].n == 50 and ss["specificity"].n == 50


def test_training_learns_and_keeps_best_checkpoint(tmp_path: Path) -> None:
    ex = _blob_patches(144, 32, 0)
    tr, va = split_by_group(ex, 0.25, seed=0)
    cfg = TrainConfig(
        arch="test_efficientnet",
        pretrained="none",
        patch_px=32,
        epochs=4,
        epoch_size=96,
        batch_size=16,
        lr=0.01,
        precision="fp32",
        num_workers=0,
        augment={"jpeg_p": 0.0, "blur_p": 0.0, "scale_p": 0.0},
    )
    ds = TrainPatches(
        None, tr, epoch_size=96, mix={"review": 1.0}, seed=0,
        transform=train_pipeline(cfg.augment, seed=0),
    )  # fmt: skip
    val = EvalSet(
        images=np.stack([e.image for e in va]),
        labels=np.array([e.label for e in va]),
        categories=tuple(e.category for e in va),
        parts=("review",) * len(va),
    )
    res = train(cfg, ds, val, tmp_path / "m", device="cpu", quiet=True, train_counts={"n": 96})
    aucs = [h["val_auc"] for h in res.history]
    assert res.best_auc == max(aucs) and res.best_epoch == aucs.index(max(aucs)) + 1
    assert res.best_auc > 0.85
    _, card = load_checkpoint(tmp_path / "m")
    assert card.training.counts == {"n": 96}
    assert card.training.validation_counts == {
        "negative": sum(e.label == 0 for e in va),
        "abnormal": sum(e.label == 1 for e in va),
    }
    assert card.preprocessing.input_size == (3, 32, 32)


def test_hard_negatives_are_the_windows_the_starting_model_scores_highest(
    tmp_path: Path, model_dir: Path
) -> None:
    from cytoscreen.training.run import hard_negatives

    vs = VirtualSlides(
        bundled_kit(), n_negative=1, n_positive=1, mpp=0.5, patch_px=32, n_cells=150,
        n_abnormal=(3, 5), seed=0,
    )  # fmt: skip
    cfg = TrainConfig(patch_px=32, init=str(model_dir), context={"hard_pool": 40, "hard_keep": 5})
    said: list[str] = []
    renders = []
    render = vs.render
    vs.render = lambda *w: renders.append(w) or render(*w)  # type: ignore[method-assign]
    hard = hard_negatives(cfg, vs, said.append)
    vs.render = render  # type: ignore[method-assign]
    assert len(hard) == 5 and all(p.label == 0 and p.kind == "hard" for p in hard)
    assert all(p.image.shape == (32, 32, 3) for p in hard)
    assert "kept the 5 of 40" in said[0]
    assert len(renders) == 40  # each window rendered once, the kept ones not again
    # the kept images are the windows the model scores highest, best first
    from cytoscreen.scoring.scorer import Scorer
    from cytoscreen.training.run import positive_scores

    scorer = Scorer.load(model_dir, "cpu", "auto", runtime="auto")
    everything = positive_scores(scorer, np.stack([render(*w) for w in renders]))
    kept = positive_scores(scorer, np.stack([p.image for p in hard]))
    np.testing.assert_allclose(kept, np.sort(everything)[::-1][:5], atol=1e-5)
    assert hard_negatives(TrainConfig(patch_px=32), vs, said.append) == []
    with pytest.raises(CytoscreenError, match="starting model"):
        hard_negatives(
            TrainConfig(patch_px=32, context={"hard_pool": 4, "hard_keep": 2}), vs, print
        )


def test_a_card_proportion_over_nothing_is_not_measured(tmp_path: Path) -> None:
    p = proportion(0, 0)  # once NaN with a [0, 1] interval
    assert (p.value, p.ci_low, p.ci_high, p.n, p.method) == (None, None, None, 0, "clopper-pearson")
    assert p.text() == "not measured (n=0)"
    y = np.ones(4)  # no negative: specificity over nothing
    ss = sens_spec(y, np.array([0.9, 0.8, 0.2, 0.7]), 0.5)
    assert ss["sensitivity"].value == 0.75 and ss["specificity"] == p
    card = ModelCard(
        arch="resnet18",
        classes=["a", "b"],
        positive_classes=["b"],
        preprocessing=Preprocessing(input_size=(3, 8, 8), mean=(0, 0, 0), std=(1, 1, 1)),
        validation=ss,
    )
    (tmp_path / CARD_NAME).write_text(card.model_dump_json(indent=2))
    assert "NaN" not in (tmp_path / CARD_NAME).read_text()
    assert read_card(tmp_path).validation == ss
