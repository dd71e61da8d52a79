"""`cytoscreen train` and ``train_model``: the bundled CRIC fields, a tiny model, reviews."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cytoscreen.cli import app
from cytoscreen.errors import CytoscreenError
from cytoscreen.review.marks import Mark, open_store
from cytoscreen.scoring.checkpoint import CARD_NAME, WEIGHTS_NAME, load_checkpoint
from cytoscreen.synth.cric import ImageSplits, read_cric
from cytoscreen.synth.kit import BUNDLED_KIT
from cytoscreen.synth.tiffwriter import write_array_tiff
from cytoscreen.training.config import TrainConfig
from cytoscreen.training.data import LabelledPatch
from cytoscreen.training.run import load_reviews, reviews_summary, split_extra

TINY = {
    "arch": "test_efficientnet",
    "pretrained": "none",
    "patch_px": 32,
    "mpp": 0.5,
    "epochs": 1,
    "epoch_size": 32,
    "batch_size": 16,
    "precision": "fp32",
    "val_fraction": 0.25,
    "num_workers": 0,
    "mix": {"review": 0.25},
    "context": {
        "n_negative": 1,
        "n_positive": 1,
        "n_cells": 100,
        "n_abnormal": [2, 4],
        "val_slides": 2,
        "val_windows": 20,
    },
}
SLIDE_ID = "case-0a1b2c3d"


@pytest.fixture(scope="module")
def cric(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The bundled kit's manifest (real CRIC fields) and a split of its fields by image in
    which every split holds NILM-only fields and fields with abnormal cells."""
    crops = read_cric(BUNDLED_KIT / "manifest.csv")
    ids = sorted({c.image_id for c in crops})
    has_ab = sorted({c.image_id for c in crops if c.abnormal})
    order = [i for i in ids if i not in has_ab] + has_ab
    parts: dict[str, set[int]] = {"train": set(), "val": set(), "test": set()}
    for k, i in enumerate(order):
        parts[("train", "val", "test")[k % 3]].add(i)
    splits = ImageSplits(0, (0.6, 0.2, 0.2), {k: frozenset(v) for k, v in parts.items()})
    path = tmp_path_factory.mktemp("cric") / "splits.json"
    path.write_text(splits.to_json(crops))
    return BUNDLED_KIT / "manifest.csv", path


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _results(root: Path, marks: list[tuple[int, str, str | None]]) -> Path:
    """A results folder (the layout `cytoscreen screen` writes) with one slide and marks on
    fields 1..4: 128-px boxes at 0.25 um/px, i.e. 2 x 2 patches of 32 px at 0.5 um/px."""
    rng = np.random.default_rng(1)
    img = np.full((800, 1100, 3), 235, np.uint8)
    img[100:700, 100:1000] = rng.integers(80, 200, (600, 900, 3), dtype=np.uint8)
    slide = root / "slide.tif"
    root.mkdir(parents=True)
    write_array_tiff(slide, img, mpp=0.25)
    boxes = {r: (200 * r, 150, 200 * r + 128, 278) for r in range(1, 5)}
    fields = [
        {"rank": r, "score": 0.9, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3]}
        for r, b in boxes.items()
    ]
    result = {
        "format": 1, "id": SLIDE_ID, "relative_path": "case.tif", "path": str(slide),
        "status": "ok", "outcome": "review", "score": 0.9, "threshold": 0.5,
        "model_id": "m", "fields": fields, "warnings": [], "error": None,
        "slide": {"mpp": 0.25, "backend": "tiffslide", "target_mpp": 0.5, "patch_size": 32},
    }  # fmt: skip
    out = root / "RESULTS"
    (out / "slides" / SLIDE_ID).mkdir(parents=True)
    (out / "slides" / SLIDE_ID / "result.json").write_text(json.dumps(result))
    with open_store(out) as store:
        for rank, label, bethesda in marks:
            at = "2025-01-01T00:00:00+00:00"
            store.put(Mark(SLIDE_ID, rank, label, bethesda, "dr", "m", at, *boxes[rank]))
    return out


def test_cli_trains_with_reviews_end_to_end(
    tmp_path: Path, cric: tuple[Path, Path], tiny_cfg: Path
) -> None:
    manifest, splits = cric
    marks = [(1, "abnormal", "HSIL"), (2, "normal", None), (3, "artefact", None)]
    marks.append((4, "unsure", None))
    results = _results(tmp_path / "screen", marks)
    out = tmp_path / "model"
    args = ["train", "--config", str(tiny_cfg), "--out", str(out), "--manifest", str(manifest)]
    args += ["--splits", str(splits), "--reviews", str(results), "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    # 3 usable fields x 4 patches: HSIL positive, normal and artefact negative; unsure dropped
    assert "reviews: 12 patches from 3 fields added (negative 8, abnormal 4;" in res.output
    for name in (WEIGHTS_NAME, CARD_NAME, "README.md", "history.json"):
        assert (out / name).is_file(), name
    _, card = load_checkpoint(out)
    # three fields are too few to hold any out: all twelve patches are training data
    assert "12 reviewed" in res.output
    assert card.training.counts == {"negative": 16, "abnormal": 16}  # context draws per epoch
    assert "reviews:RESULTS" in card.training.sources
    assert card.preprocessing.input_size == (3, 32, 32) and card.mpp == 0.5
    assert card.validation["patch_auc"].n == sum(card.training.validation_counts.values())
    assert {"patch_auc_cells", "patch_auc_slides"} <= set(card.validation)
    assert card.precision in ("fp32", "bf16")
    readme = (out / "README.md").read_text()
    assert card.model_id in readme and "12 patches trained on" in readme
    assert len(json.loads((out / "history.json").read_text())) == 1


def test_load_reviews_labels_and_summary(tmp_path: Path) -> None:
    results = _results(tmp_path / "s", [(2, "abnormal", "LSIL"), (4, "normal", None)])
    cfg = TrainConfig.model_validate(TINY)
    patches = load_reviews([results], cfg)
    assert [(p.label, p.category) for p in patches] == [(1, "LSIL")] * 4 + [(0, "normal")] * 4
    assert {p.group for p in patches} == {f"review:{SLIDE_ID}:2", f"review:{SLIDE_ID}:4"}
    assert all(p.image.shape == (32, 32, 3) for p in patches)
    text = reviews_summary(patches, cfg)
    assert text.startswith("reviews: 8 patches from 2 fields added (negative 4, abnormal 4;")


def test_split_extra_keeps_each_field_on_one_side() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    patches = [
        LabelledPatch(img, int(f % 3 == 0), group=f"f{f}") for f in range(40) for _ in range(4)
    ]
    tr, va = split_extra(patches, 0.25, seed=0)
    assert {p.group for p in tr}.isdisjoint({p.group for p in va})
    assert len(tr) + len(va) == 160 and 0.15 < len(va) / 160 < 0.35
    assert {p.label for p in va} == {0, 1}
    few = patches[:12]  # three fields: nothing can be held out
    assert split_extra(few, 0.25, seed=0) == (few, [])


def _fails(args: list[str], *needles: str) -> None:
    res = CliRunner().invoke(app, ["train", *args])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    for n in needles:
        assert n in text, (n, text)


def test_bad_inputs_give_clear_errors(
    tmp_path: Path, cric: tuple[Path, Path], tiny_cfg: Path
) -> None:
    manifest, splits = cric
    out = ["--out", str(tmp_path / "m"), "--splits", str(splits)]
    cfg = ["--config", str(tiny_cfg)]
    missing = tmp_path / "nowhere.csv"
    _fails([*cfg, *out, "--manifest", str(missing)], str(missing), "CRIC manifest not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "epochz": 1}))
    _fails(["--config", str(bad), *out], str(bad), "epochz", "configs/train/default.yaml")
    _fails(["--config", str(tmp_path / "no.yaml"), *out], "no.yaml", "config not found")
    plain = _results(tmp_path / "a", [])
    (plain / "reviews.sqlite").unlink()
    _fails(
        [*cfg, *out, "--reviews", str(plain)], str(plain), "no reviews here", "cytoscreen review"
    )
    unsure = _results(tmp_path / "b", [(1, "unsure", None)])
    _fails([*cfg, *out, "--reviews", str(unsure)], str(unsure), "no usable reviews")
    _fails([*cfg, *out, "--reviews", str(tmp_path)], str(tmp_path), "no slides/")
    assert not (tmp_path / "m").exists()
    with pytest.raises(CytoscreenError, match="CRIC manifest not found"):
        from cytoscreen.training.run import train_model

        train_model(tiny_cfg, missing, splits, tmp_path / "m2", log=None)


def test_train_refuses_the_bundled_model_folder(
    tmp_path: Path, cric: tuple[Path, Path], tiny_cfg: Path
) -> None:
    """`train` never overwrites the bundled model unless --replace-bundled is given: it stops
    before reading anything (the missing manifest is never reached)."""
    from cytoscreen.scoring.card import BUNDLED_MODEL_DIR
    from cytoscreen.training.run import refuse_bundled, train_model

    _, splits = cric
    before = {p.name: p.stat().st_mtime_ns for p in BUNDLED_MODEL_DIR.iterdir()}
    missing = tmp_path / "nowhere.csv"
    args = ["--config", str(tiny_cfg), "--splits", str(splits), "--manifest", str(missing)]
    _fails([*args, "--out", str(BUNDLED_MODEL_DIR)], "bundled model", "--replace-bundled")
    _fails([*args, "--out", str(BUNDLED_MODEL_DIR / "." / "")], "bundled model's folder")
    with pytest.raises(CytoscreenError, match="bundled model's folder"):
        train_model(tiny_cfg, missing, splits, BUNDLED_MODEL_DIR, log=None)
    # asked for explicitly, the refusal is lifted (here the missing manifest stops it next)
    refuse_bundled(BUNDLED_MODEL_DIR, replace_bundled=True)
    _fails([*args, "--out", str(BUNDLED_MODEL_DIR), "--replace-bundled"], "CRIC manifest not found")
    assert {p.name: p.stat().st_mtime_ns for p in BUNDLED_MODEL_DIR.iterdir()} == before


def test_train_model_takes_every_path_explicitly() -> None:
    """No repository-relative defaults: manifest, split file and output folder are arguments."""
    import inspect

    from cytoscreen.training.run import train_model

    params = inspect.signature(train_model).parameters
    for name in ("cfg_path", "manifest", "splits_path", "out_dir"):
        assert params[name].default is inspect.Parameter.empty, name
