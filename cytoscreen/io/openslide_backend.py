"""SlideReader over openslide-python (C library from openslide-bin).

Opens Aperio SVS, Hamamatsu NDPI/VMS, 3DHistech MRXS, Leica SCN, Philips TIFF, Ventana BIF,
DICOM, Zeiss CZI and generic tiled TIFF. Only the vendor-neutral ``openslide.*`` properties are
read; raw vendor properties (which can hold patient identity, such as the ``dicom.*`` ones)
never leave this module. A DICOM slide is a folder holding one series (or one ``.dcm`` file of
it): the series is checked first (``cytoscreen.io.dicom.series_of``) and OpenSlide is given its
full-resolution file, from which it finds the rest of the series in the folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide

from cytoscreen.errors import UnreadableSlide
from cytoscreen.io._common import (
    ReaderLifecycle,
    check_region,
    resolve_mpp,
    to_rgb_on_white,
)
from cytoscreen.io.base import RGBArray
from cytoscreen.io.dicom import DicomSeries, is_dicom_slide, series_of
from cytoscreen.types import SlideMeta


class OpenSlideReader(ReaderLifecycle):
    """A slide opened with OpenSlide. Pixels are RGB uint8, transparent areas white."""

    backend = "openslide"

    def __init__(
        self, path: str | Path, *, mpp: float | None = None, series: DicomSeries | None = None
    ) -> None:
        self.path = Path(path)
        self._mpp_override = mpp
        if series is None and is_dicom_slide(self.path):
            series = series_of(self.path)
        target = series.base.path if series is not None else self.path
        try:
            self._slide = openslide.OpenSlide(str(target))
        except (openslide.OpenSlideError, OSError, ValueError) as exc:
            raise UnreadableSlide(f"OpenSlide cannot open it ({exc})", subject=self.path) from exc
        try:
            self.meta = self._read_meta()
        except BaseException:
            self._slide.close()
            raise

    def _read_meta(self) -> SlideMeta:
        props = self._slide.properties
        mpp_x, mpp_y, source = resolve_mpp(
            self.path,
            props.get(openslide.PROPERTY_NAME_MPP_X),
            props.get(openslide.PROPERTY_NAME_MPP_Y),
            self._mpp_override,
        )
        power = props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
        return SlideMeta(
            backend="openslide",
            vendor=props.get(openslide.PROPERTY_NAME_VENDOR) or "unknown",
            dimensions=tuple(self._slide.dimensions),
            level_dimensions=tuple(tuple(d) for d in self._slide.level_dimensions),
            level_downsamples=tuple(float(d) for d in self._slide.level_downsamples),
            mpp_x=mpp_x,
            mpp_y=mpp_y,
            mpp_source=source,
            objective_power=_float_or_none(power),
        )

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> RGBArray:
        check_region(self.path, self.meta.level_count, level, size)
        try:
            image = self._slide.read_region(
                (int(location[0]), int(location[1])), level, (int(size[0]), int(size[1]))
            )
        except openslide.OpenSlideError as exc:
            raise UnreadableSlide(
                f"OpenSlide failed reading level {level} at {tuple(location)} ({exc})",
                subject=self.path,
                hint="the file may be truncated or damaged; try --backend tiffslide",
            ) from exc
        # openslide-python un-premultiplies OpenSlide's ARGB: the returned RGBA is straight alpha
        return to_rgb_on_white(np.asarray(image), premultiplied=False)

    def close(self) -> None:
        self._slide.close()


def _float_or_none(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if out > 0 else None
