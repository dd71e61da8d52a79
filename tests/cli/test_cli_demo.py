"""`cytoscreen demo` end to end (shrunken slides so it runs in seconds)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cytoscreen.demo as demo
from cytoscreen.cli import app
from cytoscreen.pipeline import DEFAULT_MODEL_DIR


@pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "calibration.json").is_file(), reason="no bundled model"
)
def test_demo_screens_the_demo_slides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "DEMO_SIZE", 2048)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    with (tmp_path / "results" / "summary.csv").open(newline="", encoding="utf-8") as fh:
        rows = {Path(r["path"]).stem: r for r in csv.DictReader(fh)}
    assert set(rows) == {s.name for s in demo.DEMO_SLIDES}
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["blank"]["outcome"] == "not_assessable"  # never negative
    # a monochrome scan of a negative slide is unlike the training data: not assessable
    grey = rows["greyscale-scan"]
    assert grey["outcome"] == "not_assessable", grey
    assert "unlike the training data" in grey["reasons"] and float(grey["domain_shift"]) > 6
    for name in ("negative-a", "negative-b", "positive-lsil", "positive-hsil"):
        assert float(rows[name]["domain_shift"]) <= 6, rows[name]
    assert (tmp_path / "results" / "gallery" / "index.html").is_file()
    assert "Measured on" in result.output and "specificity" in result.output
    # a rerun reuses the slides and the finished results
    again = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert again.exit_code == 0, again.output


def test_demo_config_scales_the_adequacy_minimum_by_area() -> None:
    cfg, note = demo.demo_config()
    scale = demo.area_scale()
    assert 0 < scale < 0.05
    assert cfg.triage.min_cellularity == round(5000 * scale)
    assert str(cfg.triage.min_cellularity) in note
