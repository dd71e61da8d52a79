"""Fixtures for the batch driver: tiny synthetic slides (the tiny model and config are in
tests/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide


@pytest.fixture(scope="session")
def slide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """negative, positive, blank, a junk .svs, and a copy of the negative whose name holds a
    comma and quotes, in a sub-folder."""
    root = tmp_path_factory.mktemp("slides")
    kit = bundled_kit()
    generate_slide(
        root / "negative.tiff",
        SlideSpec(size=768, label="negative", seed=1, density=3000.0),
        kit,
    )
    generate_slide(
        root / "positive.tiff",
        SlideSpec(size=768, label="positive", seed=2, n_abnormal=4, density=3000.0),
        kit,
    )
    generate_slide(root / "blank.tiff", SlideSpec(size=512, label="blank", seed=3), kit)
    (root / "broken.svs").write_bytes(b"not a slide at all" * 64)
    (root / "sub").mkdir()
    shutil.copy(root / "negative.tiff", root / "sub" / 'odd, "name".tiff')
    return root
