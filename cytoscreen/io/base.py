"""The reader interface every backend implements.

Coordinates follow OpenSlide's convention: ``location`` is the level-0 (x, y) of the region's
top-left corner, ``size`` is (width, height) in pixels of the requested level. Pixels come back
as RGB uint8 arrays of shape (height, width, 3), transparent pixels composited onto white.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from cytoscreen.types import SlideMeta

RGBArray = npt.NDArray[np.uint8]


@runtime_checkable
class SlideReader(Protocol):
    path: Path
    meta: SlideMeta

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> RGBArray:
        """RGB pixels of one region of one pyramid level (out-of-slide area is white)."""
        ...

    def associated_image(self, name: str) -> RGBArray:
        """Label/macro/thumbnail images. Never called implicitly: they can carry patient names."""
        ...

    def associated_names(self) -> tuple[str, ...]:
        """Names of the associated images the file holds (reading none of them)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> SlideReader: ...

    def __exit__(self, *exc: object) -> None: ...
