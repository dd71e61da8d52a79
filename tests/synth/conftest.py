from __future__ import annotations

from pathlib import Path

import pytest

from cytoscreen.synth import CellKit, SlideSpec, SlideTruth, bundled_kit, generate_slide

# tiny slides need many cells per mm^2 to hold more than a few pieces
DENSE = {"density": 3000.0}


@pytest.fixture(scope="session")
def kit() -> CellKit:
    return bundled_kit()


@pytest.fixture(scope="session")
def slides(
    tmp_path_factory: pytest.TempPathFactory, kit: CellKit
) -> dict[str, tuple[Path, SlideTruth]]:
    """Small slides (seconds): positive (non-square), negative, conventional, blank and one
    without mpp."""
    root = tmp_path_factory.mktemp("synth")
    specs = {
        "positive": SlideSpec(
            size=1280, height=1024, label="positive", seed=5, n_abnormal=4, **DENSE
        ),
        "negative": SlideSpec(size=1024, label="negative", seed=6, **DENSE),
        "conventional": SlideSpec(
            size=1536, label="negative", seed=9, prep="conventional", stain=1.2, blood=0.5, **DENSE
        ),
        "blank": SlideSpec(size=768, label="blank", seed=7),
        "nompp": SlideSpec(size=640, label="negative", seed=8, mpp=None, **DENSE),
    }
    out = {}
    for name, spec in specs.items():
        path = root / f"{name}.tiff"
        out[name] = (path, generate_slide(path, spec, kit))
    return out
