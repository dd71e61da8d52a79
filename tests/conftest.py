"""Shared fixtures: the bundled real slide, a writer for small synthetic slides, and a tiny
model with its calibration plus a fast screen config (for the screen and robustness tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import yaml

from cytoscreen.synth.tiffwriter import write_array_tiff

DATA_DIR = Path(__file__).parent / "data"

WriteSlide = Callable[..., Path]


@pytest.fixture(scope="session")
def cmu1_path() -> Path:
    """OpenSlide's CMU-1-Small-Region.svs (CC0): Aperio, 2220 x 2967 px, 0.499 um/px."""
    return DATA_DIR / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="session")
def write_slide(tmp_path_factory: pytest.TempPathFactory) -> WriteSlide:
    """``write_slide(image, mpp=0.25, name=None, **tiff_kwargs) -> Path`` of a pyramidal TIFF."""
    folder = tmp_path_factory.mktemp("slides")
    counter = iter(range(1_000_000))

    def write(
        image: npt.NDArray[np.uint8],
        *,
        mpp: float | None = 0.25,
        name: str | None = None,
        **kwargs: object,
    ) -> Path:
        path = folder / (name or f"slide{next(counter)}.tif")
        write_array_tiff(path, image, mpp=mpp, **kwargs)
        return path

    return write


TINY_ARCH = "test_efficientnet"  # ~0.1 M parameters, bundled with timm for tests
TINY_PATCH = 32  # px at 0.5 um/px


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny model (32 px patches at 0.5 um/px) with calibration.json beside it,
    calibrated for the default aggregation rule."""
    import torch

    from cytoscreen.scoring.checkpoint import save_checkpoint
    from cytoscreen.scoring.model import create_model, new_card
    from cytoscreen.slide import AggregationSettings, calibrate, rule_label, save_calibration

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    model = create_model(TINY_ARCH, 2).eval()
    card = new_card(model, TINY_ARCH, ["neg", "abn"], ["abn"], TINY_PATCH)
    card = save_checkpoint(model, card, out)
    cal = calibrate(
        [0.2, 0.4, 0.6, 0.8],
        [0, 0, 1, 1],
        model_id=card.model_id,
        rule=rule_label(AggregationSettings()),
        data_source="test",
    )
    save_calibration(cal, out / "calibration.json")
    return out


def _write_config(path: Path, **sections: dict[str, Any]) -> Path:
    body: dict[str, Any] = {
        "tiling": {"patch_size": TINY_PATCH, "target_mpp": 0.5},
        "triage": {"min_cellularity": 0},
        "scoring": {"device": "cpu", "threads": 1},
        "cache": {"workers": 1},
    }
    for name, values in sections.items():
        body.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fast screen config for the tiny model (cellularity minimum 0: tiny slides)."""
    return _write_config(tmp_path_factory.mktemp("config") / "screen.yaml")


@pytest.fixture(scope="session")
def write_config() -> Callable[..., Path]:
    """``write_config(path, **sections)``: the fast screen config with sections updated."""
    return _write_config
