"""`cytoscreen demo` end to end (smaller slides and a matching adequacy minimum, so it runs in
seconds; `make demo` itself runs the full-size slides)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cytoscreen.demo as demo
from cytoscreen.cli import app
from cytoscreen.config import Config, load_config
from cytoscreen.resolve import DEFAULT_MODEL_DIR


def _small_config(base: Config | None = None) -> tuple[Config, str]:
    cfg = base or load_config()
    data = cfg.to_dict()
    data["triage"]["min_cellularity"] = 100
    return Config.model_validate(data), "test: 500-cell demo slides, minimum 100"


@pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "calibration.json").is_file(), reason="no bundled model"
)
def test_demo_screens_the_demo_slides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "DEMO_CELLS", 500)
    monkeypatch.setattr(demo, "demo_config", _small_config)
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
        assert int(rows[name]["cellularity"]) > 100, rows[name]
    for name in ("positive-lsil", "positive-hsil"):  # abnormal cells are never set aside
        assert rows[name]["outcome"] == "review", rows[name]
    assert (tmp_path / "results" / "gallery" / "index.html").is_file()
    assert "Measured on" in result.output and "specificity" in result.output
    # a rerun reuses the slides and the finished results
    again = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert again.exit_code == 0, again.output


def test_demo_slides_are_adequate_preparations() -> None:
    from cytoscreen.synth.layout import SlideSpec

    cfg, note = demo.demo_config()
    assert cfg.triage.min_cellularity <= demo.DEMO_CELLS and "6,000" in note
    for s in demo.DEMO_SLIDES:
        spec = demo.demo_spec(s)
        assert isinstance(spec, SlideSpec) and spec.prep == s.prep
        if s.label != "blank":
            assert spec.n_cells == demo.DEMO_CELLS
