"""Shared, generic fixtures: the bundled real slide and a writer for small synthetic slides."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

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
