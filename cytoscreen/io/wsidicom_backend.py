"""SlideReader over wsidicom: DICOM VL Whole Slide Microscopy Image series (a folder).

The series is checked first (``cytoscreen.io.dicom.series_of``: one series, no missing
instances, 8-bit RGB), then opened with ``WsiDicom.open`` on its files. wsidicom addresses a
level in its own pixels and refuses regions that leave the image; this reader maps OpenSlide's
convention onto it (level-0 location, truncated to the level grid; area outside the slide
white). Identity attributes (patient, dates, barcodes) are never read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cytoscreen.errors import UnreadableSlide
from cytoscreen.io._common import (
    ReaderLifecycle,
    check_region,
    no_such_associated,
    resolve_mpp,
    to_rgb_on_white,
)
from cytoscreen.io.base import RGBArray
from cytoscreen.io.dicom import DicomSeries, series_of
from cytoscreen.types import SlideMeta


def level_downsamples(dims: tuple[tuple[int, int], ...]) -> tuple[float, ...]:
    """Each level's downsample as OpenSlide computes it: the mean of the width and height
    ratios to level 0 (so both DICOM backends report the same pyramid)."""
    w0, h0 = dims[0]
    return tuple((w0 / w + h0 / h) / 2.0 for w, h in dims)


# wsidicom keeps up to 100 MB of decoded and 100 MB of encoded frames per open slide by
# default; the tiler opens one reader per worker thread and reads each tile once, so the
# caches are cut to OpenSlide's size (32 MiB), which still holds a viewer's neighbourhood.
DECODED_CACHE_BYTES = 32 * 2**20
ENCODED_CACHE_BYTES = 8 * 2**20


def _settings() -> Any:
    from wsidicom import Settings

    return Settings(
        decoded_frame_cache_size=DECODED_CACHE_BYTES,
        encoded_frame_cache_size=ENCODED_CACHE_BYTES,
    )


class WsiDicomReader(ReaderLifecycle):
    """A DICOM WSI series opened with wsidicom. Pixels are RGB uint8, outside areas white."""

    backend = "wsidicom"

    def __init__(
        self, path: str | Path, *, mpp: float | None = None, series: DicomSeries | None = None
    ) -> None:
        from wsidicom import WsiDicom

        self.path = Path(path)
        self._mpp_override = mpp
        series = series or series_of(self.path)
        try:
            self._slide = WsiDicom.open([str(f) for f in series.files], settings=_settings())
        except Exception as exc:  # wsidicom raises many types for what it cannot use
            raise UnreadableSlide(
                f"wsidicom cannot open the series ({type(exc).__name__}: {exc})",
                subject=self.path,
                hint="try --backend openslide",
            ) from exc
        try:
            self._levels = list(self._slide.levels)
            self.meta = self._read_meta(series.objective_power)
        except BaseException:
            self._slide.close()
            raise

    def _read_meta(self, objective_power: float | None) -> SlideMeta:
        base = self._levels[0]
        spacing = base.mpp  # micrometres per pixel (wsidicom's SizeMm holds um here)
        mpp_x, mpp_y, source = resolve_mpp(
            self.path,
            getattr(spacing, "width", None),
            getattr(spacing, "height", None),
            self._mpp_override,
        )
        dims = tuple((int(lv.size.width), int(lv.size.height)) for lv in self._levels)
        return SlideMeta(
            backend="wsidicom",
            vendor="dicom",
            dimensions=dims[0],
            level_dimensions=dims,
            level_downsamples=level_downsamples(dims),
            mpp_x=mpp_x,
            mpp_y=mpp_y,
            mpp_source=source,
            objective_power=objective_power,
        )

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> RGBArray:
        check_region(self.path, self.meta.level_count, level, size)
        width, height = (int(v) for v in size)
        down = self.meta.level_downsamples[level]
        # OpenSlide's mapping: the level-0 location divided by the downsample, truncated
        x, y = int(int(location[0]) / down), int(int(location[1]) / down)
        lw, lh = self.meta.level_dimensions[level]
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, lw), min(y + height, lh)
        out = np.full((height, width, 3), 255, np.uint8)
        if x1 <= x0 or y1 <= y0:
            return out
        try:
            pixels = self._slide.read_region(
                (x0, y0),
                self._levels[level].level,
                (x1 - x0, y1 - y0),
                threads=1,
                as_array=True,
            )
        except Exception as exc:  # decoding errors surface as many types
            raise UnreadableSlide(
                f"wsidicom failed reading level {level} at {tuple(location)} "
                f"({type(exc).__name__}: {exc})",
                subject=self.path,
                hint="a file of the series may be truncated or damaged; try --backend openslide",
            ) from exc
        out[y0 - y : y1 - y, x0 - x : x1 - x] = to_rgb_on_white(np.asarray(pixels))
        return out

    def associated_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._associated())

    def associated_image(self, name: str) -> RGBArray:
        """Read one associated image ("label", "macro"). May show patient identity."""
        found = dict(self._associated())
        if name not in found:
            raise no_such_associated(self.path, name, tuple(found))
        return to_rgb_on_white(np.asarray(found[name](), dtype=np.uint8))

    def _associated(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        if self._slide.labels:
            out.append(("label", lambda: self._slide.read_label(as_array=True)))
        if self._slide.overviews:
            out.append(("macro", lambda: self._slide.read_overview(as_array=True)))
        return out

    def close(self) -> None:
        self._slide.close()
