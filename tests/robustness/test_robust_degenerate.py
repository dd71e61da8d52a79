"""Issue 7, cases 4 and 6: slides without a resolution (and bad --mpp values), and slides with
one level, smaller than a patch, or blank: never NEGATIVE, never NaN."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cytoscreen.io import slide_key
from cytoscreen.synth.tiffwriter import write_array_tiff


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as fh:
        return {Path(r["path"]).name: r for r in csv.DictReader(fh)}


def test_tiny_one_level_and_blank_slides_are_not_assessable(
    tmp_path: Path, good_slide: Path, run_screen: Any
) -> None:
    import tifffile

    with tifffile.TiffFile(good_slide) as tf:
        tissue = tf.pages[0].asarray()
    root = tmp_path / "in"
    root.mkdir()
    write_array_tiff(root / "one_level.tif", tissue[:400, :400].copy(), mpp=0.25)
    write_array_tiff(root / "tiny.tif", tissue[:40, :40].copy(), mpp=0.25)
    write_array_tiff(root / "blank.tif", np.full((768, 768, 3), 245, np.uint8), mpp=0.25)
    with tifffile.TiffFile(root / "one_level.tif") as tf:
        assert len(tf.pages) == 1
    result = run_screen([root], tmp_path / "out")
    rows = _rows(tmp_path / "out")
    for name in ("tiny.tif", "blank.tif"):
        assert rows[name]["status"] == "ok", rows[name]["error"]
        assert rows[name]["outcome"] == "not_assessable", rows[name]
    assert rows["one_level.tif"]["status"] == "ok"
    assert rows["one_level.tif"]["outcome"] != "negative" or rows["one_level.tif"]["score"]
    text = "".join(p.read_text() for p in (tmp_path / "out" / "slides").rglob("*.json"))
    text += (tmp_path / "out" / "results.json").read_text()
    text += (tmp_path / "out" / "summary.csv").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def no_mpp_slide(tmp_path_factory: pytest.TempPathFactory, good_slide: Path) -> Path:
    import tifffile

    with tifffile.TiffFile(good_slide) as tf:
        tissue = tf.pages[0].asarray()
    path = tmp_path_factory.mktemp("nompp") / "nompp.tif"
    write_array_tiff(path, tissue, mpp=None)
    return path


def test_missing_mpp_is_refused_unless_given(
    tmp_path: Path, no_mpp_slide: Path, run_screen: Any
) -> None:
    refused = run_screen([no_mpp_slide], tmp_path / "a")
    assert refused.exit_code == 1
    row = _rows(tmp_path / "a")["nompp.tif"]
    assert row["status"] == "failed" and "--mpp" in row["error"] and "nompp.tif" in row["error"]
    given = run_screen([no_mpp_slide], tmp_path / "b", "--mpp", "0.25")
    assert given.exit_code == 0, given.output
    (result_path,) = (tmp_path / "b" / "slides").glob("*/result.json")
    r = json.loads(result_path.read_text())
    assert r["slide"]["mpp_source"] == "override" and r["slide"]["mpp"] == 0.25
    assert r["slide_key"] == slide_key(no_mpp_slide, mpp_override=0.25) != slide_key(no_mpp_slide)
    assert Path(r["cache"]).name.startswith(r["slide_key"])


@pytest.mark.parametrize("bad", ["0", "-0.5", "nan", "1e6", "inf"])
def test_implausible_mpp_is_a_validation_error(
    tmp_path: Path, no_mpp_slide: Path, run_screen: Any, bad: str
) -> None:
    result = run_screen([no_mpp_slide], tmp_path / "o", "--mpp", bad)
    assert result.exit_code != 0
    assert "mpp" in result.output.lower()
    assert not (tmp_path / "o" / "slides").exists() or not any(
        (tmp_path / "o" / "slides").iterdir()
    )
