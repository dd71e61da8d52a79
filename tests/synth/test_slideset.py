from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np

from cytoscreen.synth import CellKit, load_truth, make_slide_set
from cytoscreen.synth.cric import ImageSplits
from cytoscreen.synth.slideset import (
    ABNORMAL_STRATA,
    MANIFEST_COLUMNS,
    abnormal_stratum,
    draw_n_abnormal,
)


def _splits(kit: CellKit) -> ImageSplits:
    """Every split gets NILM-only and abnormal fields of the bundled kit."""
    ids = sorted(kit.fields)
    has_ab = [i for i in ids if any(c.abnormal for c in kit.fields[i].crops)]
    nilm = [i for i in ids if i not in has_ab]
    parts = {"train": set(), "val": set(), "test": set()}
    for k, i in enumerate(nilm + has_ab):
        parts[("train", "val", "test")[k % 3]].add(i)
    return ImageSplits(0, (0.6, 0.2, 0.2), {k: frozenset(v) for k, v in parts.items()})


def test_make_slide_set_writes_a_manifest_with_fields_split_by_image(
    tmp_path: Path, kit: CellKit
) -> None:
    splits = _splits(kit)
    manifest = make_slide_set(
        tmp_path, n_negative=3, n_positive=3, n_cells=150, seed=4, kit=kit, n_blank=1,
        splits=splits,
    )  # fmt: skip
    with manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == MANIFEST_COLUMNS
    assert len(rows) == 7
    assert sorted(r["label"] for r in rows) == ["blank"] + ["negative"] * 3 + ["positive"] * 3
    cells_by_split: dict[str, set[int]] = {"train": set(), "val": set(), "test": set()}
    id_to_field = {c.cell_id: f for f in kit.fields for c in kit.fields[f].crops}
    for r in rows:
        assert (tmp_path / r["path"]).is_file()
        truth = load_truth(tmp_path / r["ground_truth"])
        assert truth.label == r["label"]
        assert (r["worst_bethesda"] or None) == truth.worst_bethesda
        assert r["prep"] in ("liquid", "conventional") and float(r["stain"]) > 0
        if r["label"] == "positive":
            assert r["worst_bethesda"] != "NILM" and int(r["n_abnormal"]) >= 1
        if r["label"] != "blank":
            assert int(r["n_cells"]) >= 150
        fields = {id_to_field[c.cric_cell_id] for c in truth.cells}
        assert fields <= splits.images[r["split"]]  # never a field of another split
        cells_by_split[r["split"]].update(c.cric_cell_id for c in truth.cells)
    tr, va, te = cells_by_split["train"], cells_by_split["val"], cells_by_split["test"]
    assert not tr & va and not tr & te and not va & te
    assert json.loads((tmp_path / "splits.json").read_text())["val"] == sorted(splits.images["val"])


def test_only_puts_every_slide_in_one_split(tmp_path: Path, kit: CellKit) -> None:
    manifest = make_slide_set(
        tmp_path, n_negative=1, n_positive=1, n_cells=100, seed=2, kit=kit, splits=_splits(kit),
        only="val", n_abnormal=1,
    )  # fmt: skip
    with manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["split"] for r in rows} == {"val"}
    # asked for one abnormal cell; a field's unit may bring abnormal neighbours along with it
    assert [int(r["n_abnormal"]) >= 1 for r in rows if r["label"] == "positive"] == [True]


def test_abnormal_strata_cover_one_cell_to_hundreds() -> None:
    rng = np.random.default_rng(0)
    draws = [draw_n_abnormal(rng) for _ in range(400)]
    labels = {abnormal_stratum(n) for n in draws}
    assert labels == {"1", "2-3", "4-10", f"11-{ABNORMAL_STRATA[-1][1]}"}
    assert min(draws) == 1 and max(draws) <= ABNORMAL_STRATA[-1][1]
    # every stratum equally likely (a quarter each of 400: 100 +- about 3 sd of 8.7)
    counts = Counter(labels_of := [abnormal_stratum(n) for n in draws])
    assert len(labels_of) == 400 and all(74 <= c <= 126 for c in counts.values()), counts
    assert abnormal_stratum(500) == f">{ABNORMAL_STRATA[-1][1]}"
