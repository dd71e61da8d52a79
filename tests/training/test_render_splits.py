from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cytoscreen.errors import BadManifest
from cytoscreen.training.config import TrainConfig
from cytoscreen.training.data import CricCell, PatchDataset
from cytoscreen.training.loop import one_cycle_lr, progress_fraction
from cytoscreen.training.metrics import category_report
from cytoscreen.training.render import background_rgb, cell_sprite, render_patch
from cytoscreen.training.splits import (
    DEFAULT_SPLITS_PATH,
    apply_splits,
    load_cell_splits,
    make_cell_splits,
)

REPO = Path(__file__).resolve().parents[2]
CRIC = REPO.parent / "shared" / "data" / "cric" / "manifest.csv"


def _crop(dark: bool, seed: int = 0) -> np.ndarray:
    """A 100-px crop: glass with a dark nucleus disc in the centre (or glass only)."""
    rng = np.random.default_rng(seed)
    img = np.full((100, 100, 3), 225, np.float64) + rng.normal(0, 2, (100, 100, 3))
    if dark:
        yy, xx = np.mgrid[0:100, 0:100]
        img[(yy - 50) ** 2 + (xx - 50) ** 2 < 14**2] = (70, 50, 120)
    return np.clip(img, 0, 255).astype(np.uint8)


def _cells(tmp_path: Path, n_per: int = 10) -> list[CricCell]:
    cells = []
    spec = [("NILM", False), ("HSIL", False), ("LSIL", False), ("NILM", True), ("HSIL", True)]
    k = 0
    for bethesda, empty in spec:
        for _ in range(n_per):
            path = tmp_path / f"{k}.png"
            Image.fromarray(_crop(not empty, k)).save(path)
            cells.append(CricCell(path, bethesda, bethesda != "NILM", str(1000 + k), empty))
            k += 1
    return cells


def test_sprite_is_resampled_and_patch_shows_the_cell_off_centre() -> None:
    sprite = cell_sprite(_crop(True), 0.25, 0.5)
    assert sprite.size == 50 and sprite.layer.max() > 0.3
    empty = background_rgb(224, np.random.default_rng(0))
    assert empty.min() > 150  # no cell: pale background only
    centres = []
    for seed in range(6):
        patch = render_patch(sprite, [], patch_px=224, rng=np.random.default_rng(seed))
        dark = np.argwhere(patch.mean(axis=2) < 120)
        assert len(dark) > 100  # the nucleus survived compositing
        centres.append(dark.mean(axis=0))
    spread = np.ptp(np.array(centres), axis=0)
    assert (spread > 20).all()  # placed at different, off-centre places


def test_dataset_eval_is_repeatable_train_varies_and_near_empty_is_negative(
    tmp_path: Path,
) -> None:
    cells = _cells(tmp_path, 4)
    ev = PatchDataset(cells, patch_px=96, crop_mpp=0.25, mpp=0.5, train=False, seed=1)
    ev2 = PatchDataset(cells, patch_px=96, crop_mpp=0.25, mpp=0.5, train=False, seed=1)
    assert np.array_equal(ev.patch(5), ev2.patch(5))
    tr = PatchDataset(cells, patch_px=96, crop_mpp=0.25, mpp=0.5, train=True, seed=1)
    assert not np.array_equal(tr.patch(5), tr.patch(5))
    labels = [ev[i][1] for i in range(len(cells))]
    assert labels == [int(c.abnormal and not c.near_empty) for c in cells]
    # neighbours come only from this dataset's NILM cells (never near-empty, never abnormal)
    assert {cells[j].bethesda for j in ev._nilm} == {"NILM"}
    assert not any(cells[j].near_empty for j in ev._nilm)
    # empty_p=1: a near-empty crop with no neighbours is a plain background patch
    only_empty = PatchDataset(
        [cells[-1]], patch_px=96, crop_mpp=0.25, mpp=0.5, train=False, empty_p=1.0
    )
    assert only_empty.patch(0).min() > 150


def test_splits_are_deterministic_disjoint_and_stratified(tmp_path: Path) -> None:
    cells = _cells(tmp_path, 10)
    a, b = make_cell_splits(cells, seed=3), make_cell_splits(cells, seed=3)
    assert a.ids == b.ids and a.ids != make_cell_splits(cells, seed=4).ids
    parts = apply_splits(cells, a)
    assert sum(len(v) for v in parts.values()) == len(cells)
    for split, share in (("train", 6), ("val", 2), ("test", 2)):
        strata = {(c.bethesda, c.near_empty) for c in parts[split]}
        assert len(strata) == 5 and len(parts[split]) == 5 * share
    path = tmp_path / "s.json"
    path.write_text(a.to_json(cells))
    assert load_cell_splits(path).ids == a.ids
    assert json.loads(path.read_text())["counts"]["val"]["background"] == 4


def test_split_file_errors_name_the_problem(tmp_path: Path) -> None:
    cells = _cells(tmp_path, 10)
    sp = make_cell_splits(cells[:40], seed=0)
    with pytest.raises(BadManifest, match="in no split"):
        apply_splits(cells, sp)
    doc = json.loads(sp.to_json())
    doc["splits"]["val"].append(doc["splits"]["train"][0])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(BadManifest, match="two splits"):
        load_cell_splits(bad)
    with pytest.raises(BadManifest, match="not found"):
        load_cell_splits(tmp_path / "missing.json")


@pytest.mark.skipif(not CRIC.exists(), reason="shared CRIC data not present")
def test_committed_split_file_covers_the_cric_manifest() -> None:
    from cytoscreen.training.data import read_cric_manifest

    cells = read_cric_manifest(CRIC)
    parts = apply_splits(cells, load_cell_splits(DEFAULT_SPLITS_PATH))
    n = len(cells)
    assert abs(len(parts["train"]) / n - 0.6) < 0.02 and abs(len(parts["val"]) / n - 0.2) < 0.02
    assert make_cell_splits(cells, seed=0).ids == load_cell_splits().ids  # reproducible


def test_lr_schedule_warms_up_anneals_and_time_budget_ends_training() -> None:
    lrs = [one_cycle_lr(d, 1e-3) for d in np.linspace(0, 1, 101)]
    peak = int(np.argmax(lrs))
    assert 10 <= peak <= 20 and lrs[0] < 1e-4 and lrs[-1] < 1e-5
    assert all(x >= y for x, y in zip(lrs[peak:], lrs[peak + 1 :], strict=False))
    cfg = TrainConfig(epochs=10, max_minutes=1.0)
    assert progress_fraction(5, 100, 0.0, cfg) == 0.05
    assert progress_fraction(5, 100, 30.0, cfg) == 0.5  # time is the tighter bound
    assert progress_fraction(5, 100, 1e9, TrainConfig(epochs=10)) == 0.05


def test_category_report_counts_sensitivity_specificity_and_auc() -> None:
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    cats = ["HSIL"] * 4 + ["NILM"] * 3 + ["background"] * 3
    scores = [0.9, 0.8, 0.7, 0.2, 0.1, 0.6, 0.3, 0.05, 0.1, 0.0]
    rep = category_report(labels, cats, scores, 0.5, seed=0)
    assert rep["HSIL"]["n"] == 4 and rep["HSIL"]["flagged"] == 3
    assert rep["HSIL"]["sensitivity"] == 0.75 and rep["HSIL"]["ci_low"] < 0.75
    assert rep["NILM"]["specificity"] == pytest.approx(2 / 3)
    assert rep["background"]["specificity"] == 1.0 and "auc" not in rep["background"]
    assert rep["HSIL"]["auc"] == pytest.approx(22 / 24)  # 0.2 is below 0.6 and 0.3


def test_build_model_starts_with_a_small_head() -> None:
    import torch

    from cytoscreen.scoring.model import create_model
    from cytoscreen.training.loop import build_model, classifier_of

    raw = classifier_of(create_model("test_efficientnet", 2))
    model = build_model(TrainConfig(arch="test_efficientnet", pretrained="none")).eval()
    head = classifier_of(model)
    assert raw is not None and head is not None
    assert float(head.weight.abs().max()) < 0.1 < float(raw.weight.abs().max())
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert float(logits.abs().max()) < 1.0  # first losses near log(2), not ~4
