"""The generated-slide training source: labels from the ground truth, grouping, mix."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cytoscreen.errors import BadManifest
from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide
from cytoscreen.synth.slide import truth_paths
from cytoscreen.training.data import mix_shares
from cytoscreen.training.run import split_extra
from cytoscreen.training.slide_patches import (
    AMBIGUOUS,
    choose_patches,
    load_slide_patches,
    patch_labels,
    read_slide_manifest,
)


def test_patch_labels_centre_inside_box_touching_and_clear() -> None:
    coords = np.array([[0, 0], [100, 0], [200, 0], [300, 0]], dtype=np.int64)
    centres = np.array([[150.0, 50.0]])
    boxes = np.array([[120.0, 20.0, 215.0, 80.0]])  # reaches into the third patch
    labels = patch_labels(coords, 100.0, centres, boxes)
    assert labels.tolist() == [0, 1, AMBIGUOUS, 0]
    # the right/bottom edge is exclusive: a centre on x = 200 belongs to the third patch
    edge = patch_labels(coords, 100.0, np.array([[200.0, 0.0]]), np.array([[199.0, 0, 201, 1]]))
    assert edge.tolist() == [0, AMBIGUOUS, 1, 0]
    assert patch_labels(coords, 100.0, np.zeros((0, 2)), np.zeros((0, 4))).tolist() == [0] * 4


def test_choose_patches_keeps_positives_caps_negatives_drops_ambiguous() -> None:
    labels = np.array([0] * 50 + [1] * 3 + [AMBIGUOUS] * 4)
    keep = choose_patches(labels, 10, np.random.default_rng(0))
    assert (labels[keep] == 1).sum() == 3
    assert (labels[keep] == 0).sum() == 10
    assert (labels[keep] != AMBIGUOUS).all()
    assert np.all(np.diff(keep) > 0)
    assert (choose_patches(labels, None, np.random.default_rng(0)).size) == 53


def test_mix_shares_give_each_kind_its_share() -> None:
    kinds = ["review"] * 10 + ["slides"] * 40
    assert mix_shares(kinds, {"review": 0.1, "slides": 0.3}) == {"review": 0.1, "slides": 0.3}
    assert mix_shares(kinds, {"review": 1.0, "slides": 3.0}, context=False) == {
        "review": 0.25,
        "slides": 0.75,
    }
    assert mix_shares(kinds, None) == {"review": 0.25, "slides": 0.25}
    with pytest.raises(ValueError, match="nothing for the context"):
        mix_shares(kinds, {"review": 0.5, "slides": 0.5})
    with pytest.raises(ValueError, match="draws from none"):
        mix_shares(["review"], {"other": 1.0}, context=False)


def _tiny_set(root: Path) -> Path:
    kit = bundled_kit()
    rows = []
    for i, label in enumerate(("positive", "negative", "positive")):
        spec = SlideSpec(
            size=1024,
            label=label,  # type: ignore[arg-type]
            seed=31 + i,
            density=2500.0,
            n_abnormal=6 if label == "positive" else None,
            debris_per_mm2=0.0,
        )
        path = root / "slides" / f"s{i}.tiff"
        generate_slide(path, spec, kit)
        rows.append(
            {
                "slide_id": f"s{i}",
                "path": path.relative_to(root).as_posix(),
                "ground_truth": truth_paths(path)[0].relative_to(root).as_posix(),
            }
        )
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["slide_id", "path", "ground_truth"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def test_slide_patches_from_tiny_generated_slides(tmp_path: Path) -> None:
    manifest = _tiny_set(tmp_path)
    patches = load_slide_patches([manifest], tmp_path / "cache", max_negative=3, seed=0)
    by_slide: dict[str, list[int]] = {}
    for p in patches:
        assert p.image.shape == (224, 224, 3) and p.image.dtype == np.uint8
        assert p.source == f"slides:{p.group.removeprefix('slide:')}"
        assert p.kind == "slides"
        by_slide.setdefault(p.group, []).append(p.label)
    assert set(by_slide) == {"slide:s0", "slide:s1", "slide:s2"}
    assert sum(by_slide["slide:s1"]) == 0  # negative slide: no positive patch
    for g in ("slide:s0", "slide:s2"):
        assert 1 <= sum(by_slide[g]) <= 6  # each abnormal cell centre lies in one patch
        assert by_slide[g].count(0) <= 3  # negatives capped per slide
    # a positive patch differs from blank glass (it holds a stained cell)
    pos = [p for p in patches if p.label == 1]
    assert all(float(p.image.mean()) < 250 for p in pos)
    # whole slides on one side of a split
    tr, va = split_extra(patches, 0.5, 0)
    assert not {p.group for p in tr} & {p.group for p in va}


def test_read_slide_manifest_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(BadManifest, match="not found"):
        read_slide_manifest(tmp_path / "nope.csv")
    bad = tmp_path / "manifest.csv"
    bad.write_text("slide_id,path,ground_truth\nx,slides/x.tiff,slides/x.cells.json\n")
    with pytest.raises(BadManifest, match="missing"):
        read_slide_manifest(bad)


def test_build_model_starts_from_a_model_folder() -> None:
    from cytoscreen.resolve import DEFAULT_MODEL_DIR
    from cytoscreen.scoring.checkpoint import load_checkpoint
    from cytoscreen.training.config import TrainConfig
    from cytoscreen.training.loop import build_model

    model = build_model(TrainConfig(init=str(DEFAULT_MODEL_DIR)))
    ref, _ = load_checkpoint(DEFAULT_MODEL_DIR)
    for (name, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items(), strict=True):
        assert a.equal(b), name  # head included: fine-tuning keeps the trained classifier
    with pytest.raises(ValueError, match="config wants"):
        build_model(TrainConfig(init=str(DEFAULT_MODEL_DIR), classes=["a", "b", "c"]))
