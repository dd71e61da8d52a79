from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from cytoscreen.errors import BadManifest, ConfigError
from cytoscreen.scoring.checkpoint import load_checkpoint
from cytoscreen.training.augment import train_pipeline
from cytoscreen.training.config import TrainConfig, load_train_config
from cytoscreen.training.data import (
    LabelledPatch,
    PatchDataset,
    read_cric_manifest,
    split_by_group,
)
from cytoscreen.training.loop import _loader, seed_everything, train
from cytoscreen.training.metrics import auc_with_ci, cells_only_auc, proportion, sens_spec
from cytoscreen.training.render import background_rgb

REPO = Path(__file__).resolve().parents[2]


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


def test_weighted_sampler_balances_classes() -> None:
    ex = _blob_patches(90, 16, 0)  # one third positive
    ds = PatchDataset(ex, patch_px=16, crop_mpp=0.25, mpp=0.5, train=True)
    cfg = TrainConfig(batch_size=90, balance="sampler")
    labels = np.concatenate(
        [y.numpy() for _ in range(5) for _, y in _loader(ds, cfg, seed_everything(0), True)]
    )
    assert 0.4 < labels.mean() < 0.6


def test_manifest_problems_are_reported_by_row(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "m.csv").write_text(
        "path,bethesda,abnormal,cric_cell_id,width,height,near_empty\n"
        "a.png,NILM,1,1,100,100,0\nb.png,HSIL,1,2,100,100,0\nc.png,XYZ,1,3,100,100,0\n"
    )
    with pytest.raises(BadManifest) as err:
        read_cric_manifest(tmp_path / "m.csv")
    text = str(err.value)
    assert "row 2" in text and "row 3: no file" in text and "row 4" in text


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
    ex = _blob_patches(96, 32, 0)
    tr, va = split_by_group(ex, 0.25, seed=0)
    cfg = TrainConfig(
        arch="test_efficientnet",
        pretrained="none",
        patch_px=32,
        epochs=4,
        batch_size=16,
        lr=0.01,
        precision="fp32",
        augment={"jpeg_p": 0.0, "blur_p": 0.0, "scale_p": 0.0},
    )
    res = train(cfg, tr, va, tmp_path / "m", device="cpu", quiet=True)
    aucs = [h["val_auc"] for h in res.history]
    assert res.best_auc == max(aucs) and res.best_epoch == aucs.index(max(aucs)) + 1
    assert res.best_auc > 0.85
    model, card = load_checkpoint(tmp_path / "m")
    assert card.training.counts == {
        "negative": sum(e.label == 0 for e in tr),
        "abnormal": sum(e.label == 1 for e in tr),
    }
    assert card.preprocessing.input_size == (3, 32, 32)


def test_cells_only_auc_leaves_background_out() -> None:
    # background patches score lowest and flatter the full AUC (9 of 10 pairs ordered); among
    # cells only 3 of the 4 (abnormal, NILM) pairs are ordered
    labels = [0, 0, 0, 1, 1, 0, 0]
    cats = ["background", "background", "background", "HSIL", "LSIL", "NILM", "NILM"]
    scores = [0.0, 0.1, 0.2, 0.9, 0.5, 0.6, 0.4]
    full = auc_with_ci(labels, scores, n_boot=0)
    cells = cells_only_auc(labels, cats, scores, "background")
    assert cells is not None
    assert full.value == pytest.approx(9 / 10)
    assert cells.value == pytest.approx(3 / 4) and cells.n == 4
    # no NILM cell left once background is dropped: nothing to report
    assert cells_only_auc([0, 1], ["background", "HSIL"], [0.1, 0.9], "background") is None
