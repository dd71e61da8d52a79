"""DICOM whole-slide series from the command line: ``info``, ``tile``, ``screen`` and the review
server open a series folder like any other slide, a broken series fails alone naming its file,
and the DICOM copy of a slide screens exactly as the slide it was made from."""

from __future__ import annotations

import csv
import json
import shutil
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cytoscreen.cli import app
from cytoscreen.review.server import make_server
from tests.dicom_fixtures import PATIENT, convert, missing_part, two_series, write_secondary_capture


@pytest.fixture(scope="module")
def dicom_inputs(tmp_path_factory: pytest.TempPathFactory, slide_dir: Path) -> Path:
    """negative.tiff, its lossless DICOM copy (a folder), and three broken series."""
    root = tmp_path_factory.mktemp("dicom-inputs")
    source = slide_dir / "negative.tiff"
    shutil.copy(source, root / "negative.tiff")
    convert(source, root / "negative-dicom", compression="jpeg2k")
    two_series(source, root / "two-slides")
    missing_part(source, root / "lost-part")
    write_secondary_capture(root / "not-a-slide" / "ct.dcm")
    return root


@pytest.fixture(scope="module")
def screened(
    tmp_path_factory: pytest.TempPathFactory,
    dicom_inputs: Path,
    model_dir: Path,
    config_path: Path,
) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("dicom-results")
    args = ["screen", str(dicom_inputs), "--out", str(out), "--config", str(config_path)]
    result = CliRunner().invoke(app, [*args, "--model", str(model_dir)])
    return out, result


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as fh:
        return {Path(r["path"]).name: r for r in csv.DictReader(fh)}


def test_a_series_is_one_slide_and_screens_as_its_source(screened: tuple[Path, Any]) -> None:
    out, result = screened
    assert result.exit_code == 1, result.output  # the broken series failed
    rows = _summary(out)
    assert set(rows) == {
        "negative.tiff",
        "negative-dicom",
        "two-slides",
        "lost-part",
        "not-a-slide",
    }
    tiff, dicom = rows["negative.tiff"], rows["negative-dicom"]
    assert tiff["status"] == dicom["status"] == "ok"
    for column in ("outcome", "score", "n_patches", "cellularity", "top_field"):
        assert dicom[column] == tiff[column], column
    record = json.loads((out / "slides" / dicom["id"] / "result.json").read_text())
    assert record["slide"]["backend"] == "wsidicom"
    assert record["slide"]["mpp"] == pytest.approx(0.25)
    assert dicom["id"].startswith("negative-dicom-")


def test_broken_series_fail_alone_naming_the_file(
    screened: tuple[Path, Any], dicom_inputs: Path
) -> None:
    rows = _summary(screened[0])
    expected = {
        "two-slides": (str(dicom_inputs / "two-slides"), "holds 2 DICOM series"),
        "lost-part": (str(dicom_inputs / "lost-part"), "part(s) 2 of 3"),
        "not-a-slide": (str(dicom_inputs / "not-a-slide" / "ct.dcm"), "not a VL Whole Slide"),
    }
    for name, (subject, words) in expected.items():
        assert rows[name]["status"] == "failed"
        assert rows[name]["error"].startswith(subject + ":"), rows[name]["error"]
        assert words in rows[name]["error"]


def test_no_output_carries_the_patient_or_the_label(screened: tuple[Path, Any]) -> None:
    out = screened[0]
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".geojson", ".yaml", ".html"):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert PATIENT not in text and "SYNTH-0001" not in text, path
    slide = next(p for p in (out / "slides").iterdir() if p.name.startswith("negative-dicom-"))
    assert not [p for p in slide.rglob("*") if "label" in p.name or "macro" in p.name]


def test_review_serves_the_series(screened: tuple[Path, Any]) -> None:
    out = screened[0]
    slide_id = _summary(out)["negative-dicom"]["id"]
    server = make_server(out, reviewer="Dr Test", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(f"{server.url}/dzi/{slide_id}.dzi", timeout=10) as r:
            assert r.status == 200 and b"Image" in r.read()
        with urllib.request.urlopen(
            f"{server.url}/dzi/{slide_id}_files/8/0_0.jpeg", timeout=10
        ) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
    finally:
        server.shutdown()
        server.server_close()


def test_info_and_tile_take_the_folder(
    dicom_inputs: Path, config_path: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    info = runner.invoke(app, ["info", str(dicom_inputs / "negative-dicom")])
    assert info.exit_code == 0, info.output
    assert "wsidicom" in info.output and "dicom" in info.output
    assert "0.25 um/px" in info.output and PATIENT not in info.output
    bad = runner.invoke(app, ["info", str(dicom_inputs / "lost-part")])
    assert bad.exit_code != 0 and "part(s) 2 of 3" in bad.output
    tiled = runner.invoke(
        app,
        ["tile", str(dicom_inputs / "negative-dicom"), "--out", str(tmp_path), "--config",
         str(config_path)],
    )  # fmt: skip
    assert tiled.exit_code == 0, tiled.output
    assert len(list(tmp_path.glob("*.zarr"))) == 1
