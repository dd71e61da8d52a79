"""The CRIC manifest reader and the split by image."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytoscreen.errors import BadManifest
from cytoscreen.synth.cric import (
    CRIC_COLUMNS,
    SPLITS,
    ImageSplits,
    load_image_splits,
    read_cric,
    split_images,
)
from cytoscreen.synth.kit import BUNDLED_KIT


def test_bundled_manifest_reads_with_positions() -> None:
    crops = read_cric(BUNDLED_KIT / "manifest.csv")
    assert crops and all(c.path.is_file() for c in crops)
    for c in crops:
        x0, y0, x1, y1 = c.window
        assert x0 <= c.nucleus_x < x1 and y0 <= c.nucleus_y < y1
        assert c.abnormal == (c.bethesda != "NILM")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    head = ",".join(CRIC_COLUMNS)
    rows = [
        "a.png,NILM,0,1,7,10,10,0,0,100,100",  # ok (file missing is reported)
        "b.png,LSIL,0,2,7,10,10,0,0,100,100",  # abnormal flag contradicts the class
        "c.png,XYZ,1,3,7,10,10,0,0,100,100",  # unknown class
        "d.png,NILM,0,4,7,500,10,0,0,100,100",  # nucleus outside its crop
    ]
    (tmp_path / "manifest.csv").write_text("\n".join([head, *rows]) + "\n")
    with pytest.raises(BadManifest) as err:
        read_cric(tmp_path / "manifest.csv")
    text = str(err.value)
    for needle in ("line 2: no file a.png", "line 3", "line 4: unknown", "line 5: the nucleus"):
        assert needle in text
    (tmp_path / "old.csv").write_text("path,bethesda,abnormal,cric_cell_id,near_empty\n")
    with pytest.raises(BadManifest, match="missing columns"):
        read_cric(tmp_path / "old.csv")


def test_split_by_image_is_disjoint_stratified_and_round_trips(tmp_path: Path) -> None:
    crops = read_cric(BUNDLED_KIT / "manifest.csv")
    splits = split_images(crops, seed=0, every_class=False)
    sets = [splits.images[s] for s in SPLITS]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == {c.image_id for c in crops}
    for s in SPLITS:
        classes = {c.bethesda for c in splits.select(crops, s)}
        assert "NILM" in classes and classes - {"NILM"}
    # crops of one image are never on two sides
    for c in crops:
        assert splits.split_of(c.image_id) in SPLITS
    path = tmp_path / "splits.json"
    path.write_text(splits.to_json(crops))
    again = load_image_splits(path)
    assert again.images == splits.images and again.seed == splits.seed
    with pytest.raises(ValueError, match="every class"):
        split_images(crops, seed=0)  # 8 fields cannot give every split every class


def test_a_split_file_by_cell_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text('{"seed": 0, "fractions": {"train": 0.6, "val": 0.2, "test": 0.2},'
                   ' "splits": {"train": [1], "val": [2], "test": [3]}}')  # fmt: skip
    with pytest.raises(BadManifest, match="by cell"):
        load_image_splits(old)
    twice = ImageSplits(0, (0.6, 0.2, 0.2), {"train": frozenset({1}), "val": frozenset({1}),
                                             "test": frozenset()})  # fmt: skip
    path = tmp_path / "twice.json"
    path.write_text(twice.to_json())
    with pytest.raises(BadManifest, match="two splits"):
        load_image_splits(path)
