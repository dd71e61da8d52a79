"""Fixtures for the robustness suite: a tiny model with calibration, a fast screen config,
small synthetic slides and a helper that runs ``cytoscreen screen`` through the CLI."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide

ScreenFn = Callable[..., Any]


def _make_slide(path: Path, size: int = 768, seed: int = 1, **spec: Any) -> Path:
    """A small synthetic Pap slide (0.25 um/px, 256 px JPEG tiles) with cells everywhere."""
    options: dict[str, Any] = {"label": "negative", "density": 3000.0}
    options.update(spec)
    generate_slide(path, SlideSpec(size=size, seed=seed, **options), bundled_kit())
    return path


@pytest.fixture(scope="session")
def good_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_slide(tmp_path_factory.mktemp("good") / "good.tiff")


@pytest.fixture(scope="session")
def make_slide() -> Callable[..., Path]:
    """``make_slide(path, size=768, seed=1, **spec)``: a small synthetic slide."""
    return _make_slide


@pytest.fixture(scope="session")
def run_screen(model_dir: Path, config_path: Path) -> ScreenFn:
    """``run_screen(inputs, out, *extra_args, config=None) -> click Result`` of the CLI."""
    from cytoscreen.cli import app

    def run(inputs: Sequence[Path], out: Path, *extra: str, config: Path | None = None) -> Any:
        args = ["screen", *map(str, inputs), "--out", str(out), "--model", str(model_dir)]
        args += ["--config", str(config or config_path), *extra]
        return CliRunner().invoke(app, args)

    return run


def _summary_rows(out: Path) -> dict[str, dict[str, str]]:
    import csv

    with (out / "summary.csv").open(newline="", encoding="utf-8") as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


def _slide_results(out: Path) -> dict[str, dict[str, Any]]:
    import json

    found = {}
    for p in sorted((out / "slides").glob("*/result.json")):
        r = json.loads(p.read_text(encoding="utf-8"))
        r["_dir"] = str(p.parent)
        found[r["path"]] = r
    return found


@pytest.fixture(scope="session")
def summary_rows() -> Callable[[Path], dict[str, dict[str, str]]]:
    """``summary_rows(out)``: the rows of ``out/summary.csv`` keyed by the slide's path."""
    return _summary_rows


@pytest.fixture(scope="session")
def slide_results() -> Callable[[Path], dict[str, dict[str, Any]]]:
    """``slide_results(out)``: every ``slides/*/result.json`` keyed by the slide's path, with
    ``_dir`` (the slide's output folder) added."""
    return _slide_results
