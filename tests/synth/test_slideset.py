from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cytoscreen.synth import CellKit, load_truth, make_slide_set
from cytoscreen.synth.slideset import MANIFEST_COLUMNS, split_cells


def test_split_cells_partitions_ids(kit: CellKit) -> None:
    parts = split_cells(kit, (0.6, 0.2, 0.2), seed=3)
    ids = [parts[s] for s in ("train", "val", "test")]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert set().union(*ids) == set(kit.cell_ids.tolist())
    assert split_cells(kit, (0.6, 0.2, 0.2), seed=3) == parts
    with pytest.raises(ValueError):
        split_cells(kit, (1.0, 0.0), seed=0)


def test_make_slide_set_writes_a_manifest_with_disjoint_splits(
    tmp_path: Path, kit: CellKit
) -> None:
    manifest = make_slide_set(
        tmp_path, n_negative=3, n_positive=3, size=512, seed=4, kit=kit, n_blank=1,
        splits=(0.34, 0.33, 0.33), cell_bearing=0.4, clustering=0.0,
    )  # fmt: skip
    with manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == MANIFEST_COLUMNS
    assert len(rows) == 7
    assert sorted(r["label"] for r in rows) == ["blank"] + ["negative"] * 3 + ["positive"] * 3
    cells_by_split: dict[str, set[int]] = {"train": set(), "val": set(), "test": set()}
    for r in rows:
        assert (tmp_path / r["path"]).is_file()
        truth = load_truth(tmp_path / r["ground_truth"])
        assert truth.label == r["label"]
        assert (r["worst_bethesda"] or None) == truth.worst_bethesda
        if r["label"] == "positive":
            assert r["worst_bethesda"] != "NILM" and int(r["n_abnormal"]) >= 1
        cells_by_split[r["split"]].update(c.cric_cell_id for c in truth.cells)
    assert {r["split"] for r in rows if r["label"] != "blank"} == {"train", "val", "test"}
    tr, va, te = cells_by_split["train"], cells_by_split["val"], cells_by_split["test"]
    assert tr and va and te
    assert not tr & va and not tr & te and not va & te


def test_explicit_cell_splits_are_respected(tmp_path: Path, kit: CellKit) -> None:
    ids = sorted(set(int(i) for i in kit.cell_ids))
    val = set(ids[::2])
    manifest = make_slide_set(
        tmp_path, n_negative=1, n_positive=1, size=512, seed=2, kit=kit,
        splits=(0.0, 1.0, 0.0), cell_bearing=0.4, clustering=0.0,
        cell_splits={"train": set(ids) - val, "val": val, "test": set()},
    )  # fmt: skip
    with manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["split"] for r in rows} == {"val"}
    for r in rows:
        truth = json.loads((tmp_path / r["ground_truth"]).read_text())
        used = {c["cric_cell_id"] for c in truth["cells"]}
        assert used and used <= val
