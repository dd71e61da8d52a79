"""Fixtures for the batch driver: a tiny model with a calibration, and tiny synthetic slides."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide

ARCH = "test_efficientnet"  # ~0.1 M parameters, bundled with timm for tests
PATCH = 32
RULE = "top_k_mean(k=10)"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny model (32 px patches at 0.5 um/px) with calibration.json beside it."""
    import torch

    from cytoscreen.scoring.checkpoint import save_checkpoint
    from cytoscreen.scoring.model import create_model, new_card
    from cytoscreen.slide import calibrate, save_calibration

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    model = create_model(ARCH, 2).eval()
    card = save_checkpoint(model, new_card(model, ARCH, ["neg", "abn"], ["abn"], PATCH), out)
    cal = calibrate(
        [0.2, 0.4, 0.6, 0.8], [0, 0, 1, 1], model_id=card.model_id, rule=RULE, data_source="test"
    )
    save_calibration(cal, out / "calibration.json")
    return out


@pytest.fixture(scope="session")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiles for the tiny model; min_cellularity 0 because the tiler counts no nuclei yet."""
    path = tmp_path_factory.mktemp("config") / "screen.yaml"
    body = {
        "tiling": {"patch_size": PATCH, "target_mpp": 0.5},
        "triage": {"min_cellularity": 0},
        "scoring": {"device": "cpu", "threads": 1},
        "cache": {"workers": 1},
    }
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def slide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """negative, positive, blank, a junk .svs, and a copy of the negative whose name holds a
    comma and quotes, in a sub-folder."""
    root = tmp_path_factory.mktemp("slides")
    kit = bundled_kit()
    generate_slide(
        root / "negative.tiff",
        SlideSpec(size=768, label="negative", seed=1, cell_bearing=0.4, clustering=0.0),
        kit,
    )
    generate_slide(
        root / "positive.tiff",
        SlideSpec(
            size=768, label="positive", seed=2, n_abnormal=4, cell_bearing=0.4, clustering=0.0
        ),
        kit,
    )
    generate_slide(root / "blank.tiff", SlideSpec(size=512, label="blank", seed=3), kit)
    (root / "broken.svs").write_bytes(b"not a slide at all" * 64)
    (root / "sub").mkdir()
    shutil.copy(root / "negative.tiff", root / "sub" / 'odd, "name".tiff')
    return root
