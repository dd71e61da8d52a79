"""A small results folder in the layout ``cytoscreen screen`` writes (result.json, pictures),
over one real pyramidal TIFF, built without running the model: the review code only reads it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cytoscreen.synth.tiffwriter import write_array_tiff

SLIDE_W, SLIDE_H = 1400, 1000
EVIL_NAME = 'cases/<script>alert("x")</script> & co.tiff'
IDS = ("evil_script-0a1b2c3d", "negative-11111111", "broken-22222222")


def _png(path: Path, w: int, h: int, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((h, w, 3), np.uint8) + np.array(colour, np.uint8)
    img[h // 4 : h // 2, w // 4 : w // 2] = (40, 40, 160)
    Image.fromarray(img).save(path)


def _fields(n: int) -> list[dict[str, Any]]:
    out = []
    for rank in range(1, n + 1):
        x0, y0 = 100 + 200 * (rank - 1), 150 + 100 * (rank - 1)
        out.append(
            {"rank": rank, "score": round(0.95 - 0.1 * rank, 3), "x0": x0, "y0": y0,
             "x1": x0 + 128, "y1": y0 + 128, "image": f"fields/{rank}.png"}
        )  # fmt: skip
    return out


def make_results(root: Path, slide: Path) -> Path:
    """Three slides: one for review with a hostile name, one negative, one failed."""
    base: dict[str, Any] = {
        "format": 1,
        "model_id": "tiny-model-abc",
        "cache": None,
        "slide": {"mpp": 0.25, "backend": "tiffslide", "target_mpp": 0.5, "patch_size": 32},
    }
    results: list[dict[str, Any]] = [
        {**base, "id": IDS[0], "relative_path": EVIL_NAME, "path": str(slide), "status": "ok",
         "outcome": "review", "score": 0.91, "threshold": 0.5, "fields": _fields(4),
         "warnings": ["<b>bold</b> warning"], "error": None, "cellularity": 7321, "obscured": 0.834,
         "reasons": ["review: scores unlike the calibration slides (the 90th percentile ...)",
                     "score 0.91 >= threshold 0.5 (max)"]},
        {**base, "id": IDS[1], "relative_path": "negative.tiff", "path": str(slide),
         "status": "ok", "outcome": "negative", "score": 0.12, "threshold": 0.5,
         "fields": _fields(2), "warnings": [], "error": None},
        {**base, "id": IDS[2], "relative_path": "broken.svs", "path": "/nowhere/broken.svs",
         "status": "failed", "outcome": None, "score": None, "threshold": None, "fields": [],
         "error": "broken.svs: not a slide -- check the file"},
    ]  # fmt: skip
    for r in results:
        d = root / "slides" / r["id"]
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(r), encoding="utf-8")
        if r["status"] == "ok":
            _png(d / "thumbnail.png", 140, 100, (235, 220, 230))
            _png(d / "heatmap.png", 140, 100, (200, 120, 60))
            for f in r["fields"]:
                _png(d / f["image"], 96, 96, (230, 200, 215))
    (root / "run.json").write_text(json.dumps({"model": {"id": "tiny-model-abc"}}), "utf-8")
    return root


@pytest.fixture(scope="session")
def review_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    img = np.full((SLIDE_H, SLIDE_W, 3), 235, np.uint8)
    img[200:600, 300:900] = rng.integers(80, 200, (400, 600, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("review_slide") / "slide.tif"
    write_array_tiff(path, img, mpp=0.25)
    return path


@pytest.fixture(scope="session")
def _results_template(tmp_path_factory: pytest.TempPathFactory, review_slide: Path) -> Path:
    return make_results(tmp_path_factory.mktemp("results_template"), review_slide)


@pytest.fixture
def results_dir(tmp_path: Path, _results_template: Path) -> Iterator[Path]:
    """A fresh copy per test (tests write galleries and review databases into it)."""
    dest = tmp_path / "RESULTS"
    shutil.copytree(_results_template, dest)
    yield dest


@pytest.fixture(scope="session")
def ids() -> tuple[str, ...]:
    """Slide ids of the results folder: (hostile name, negative, failed)."""
    return IDS


@pytest.fixture(scope="session")
def evil_name() -> str:
    return EVIL_NAME
