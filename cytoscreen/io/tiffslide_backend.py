"""SlideReader over tiffslide (pure Python: tifffile + zarr + imagecodecs).

Opens what OpenSlide refuses among TIFF-like files: stripped (untiled) TIFFs, JPEG 2000 or
JPEG XL compressed TIFFs, and SVS/NDPI/OME-TIFF variants. Only the vendor-neutral
``tiffslide.*`` properties are read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile
import tiffslide

from cytoscreen.errors import CytoscreenError, UnreadableSlide
from cytoscreen.io._common import (
    ReaderLifecycle,
    check_region,
    resolve_mpp,
    to_rgb_on_white,
)
from cytoscreen.io.base import RGBArray
from cytoscreen.io.tiles import TiledPage, Windows
from cytoscreen.types import SlideMeta

_ASSOCIATED_ALPHA = 1  # TIFF ExtraSamples value for premultiplied alpha


class TiffSlideReader(ReaderLifecycle):
    """A slide opened with tiffslide. Pixels are RGB uint8, transparent and outside areas white."""

    backend = "tiffslide"

    def __init__(self, path: str | Path, *, mpp: float | None = None) -> None:
        self.path = Path(path)
        self._mpp_override = mpp
        try:
            self._slide = tiffslide.TiffSlide(self.path)
        except Exception as exc:  # tifffile/zarr raise many types for non-slides
            raise UnreadableSlide(
                f"tiffslide cannot open it ({type(exc).__name__}: {exc})", subject=self.path
            ) from exc
        self._fd: int | None = None
        try:
            self.meta = self._read_meta()
            self._premultiplied = self._has_associated_alpha()
            self._fd = os.open(self.path, os.O_RDONLY)
            self._tiled = self._tiled_levels(self._fd)
        except CytoscreenError:
            self.close()
            raise
        except Exception as exc:  # a damaged directory is often found only when metadata is read
            self.close()
            raise UnreadableSlide(
                f"tiffslide cannot read its structure ({type(exc).__name__}: {exc}); the file "
                "may be truncated or damaged",
                subject=self.path,
            ) from exc
        except BaseException:
            self.close()
            raise

    def _tiled_levels(self, fd: int) -> list[TiledPage | None]:
        """Direct tile readers for the levels that are plain tiled pages (None: use tiffslide)."""
        out: list[TiledPage | None] = []
        series = self._slide.ts_tifffile.series[self._series_index()]
        for level, dims in enumerate(self.meta.level_dimensions):
            try:
                page = series.levels[level].keyframe
                ok = TiledPage.supports(page) and (page.imagewidth, page.imagelength) == dims
            except (AttributeError, IndexError, ValueError):
                ok = False
            out.append(TiledPage(page, fd) if ok else None)
        return out

    def _read_meta(self) -> SlideMeta:
        props = self._slide.properties
        recorded = (
            props.get(tiffslide.PROPERTY_NAME_MPP_X),
            props.get(tiffslide.PROPERTY_NAME_MPP_Y),
        )
        if recorded == (None, None):  # tiffslide does not parse OME-XML physical sizes
            recorded = _ome_mpp(self._slide.ts_tifffile, self._series_index())
        mpp_x, mpp_y, source = resolve_mpp(self.path, *recorded, self._mpp_override)
        power = props.get(tiffslide.PROPERTY_NAME_OBJECTIVE_POWER)
        return SlideMeta(
            backend="tiffslide",
            vendor=props.get(tiffslide.PROPERTY_NAME_VENDOR) or "generic-tiff",
            dimensions=tuple(int(v) for v in self._slide.dimensions),  # type: ignore[arg-type]
            level_dimensions=tuple((int(w), int(h)) for w, h in self._slide.level_dimensions),
            level_downsamples=tuple(float(d) for d in self._slide.level_downsamples),
            mpp_x=mpp_x,
            mpp_y=mpp_y,
            mpp_source=source,
            objective_power=float(power) if power else None,
        )

    def _series_index(self) -> int:
        return int(self._slide.properties.get("tiffslide.series-index") or 0)

    def _has_associated_alpha(self) -> bool:
        page = self._slide.ts_tifffile.series[self._series_index()].keyframe
        return _ASSOCIATED_ALPHA in tuple(getattr(page, "extrasamples", ()) or ())

    @property
    def has_direct_tiles(self) -> bool:
        """True when every level is read through the direct tile path."""
        return all(t is not None for t in self._tiled)

    def read_region(
        self,
        location: tuple[int, int],
        level: int,
        size: tuple[int, int],
        *,
        needed: Windows | None = None,
    ) -> RGBArray:
        """``SlideReader.read_region``; ``needed`` ((x, y, w, h) in region pixels) lets the
        direct tile path skip tiles under none of them (left white): see ``TiledPage.read``."""
        check_region(self.path, self.meta.level_count, level, size)
        x, y = int(location[0]), int(location[1])
        w, h = int(size[0]), int(size[1])
        ds = self.meta.level_downsamples[level]
        window = _inside_window((x, y), (w, h), ds, self.meta.level_dimensions[level])
        if window is None:  # wholly outside the slide (tiffslide would warn and pad black)
            return np.full((h, w, 3), 255, np.uint8)
        tiled = self._tiled[level]
        try:
            if tiled is not None:  # fast path: each tile read once and decoded once
                tiles = tiled.read(int(x / ds), int(y / ds), w, h, needed)
                return to_rgb_on_white(tiles, premultiplied=self._premultiplied)
            arr = self._slide.read_region((x, y), level, (w, h), as_array=True, padding=True)
        except Exception as exc:
            raise UnreadableSlide(
                f"tiffslide failed reading level {level} at {(x, y)} ({exc})",
                subject=self.path,
                hint="the file may be truncated or damaged; try --backend openslide",
            ) from exc
        if arr.dtype != np.uint8:
            raise UnreadableSlide(
                f"pixels are {arr.dtype}, not 8-bit colour",
                subject=self.path,
                hint="only 8-bit brightfield slides are supported",
            )
        rgb = to_rgb_on_white(arr, premultiplied=self._premultiplied)
        x_lo, y_lo, x_hi, y_hi = window
        if (x_lo, y_lo, x_hi, y_hi) == (0, 0, w, h):
            return rgb
        # tiffslide pads out-of-slide areas with black; make them white like OpenSlide's
        out = np.full_like(rgb, 255)
        out[y_lo:y_hi, x_lo:x_hi] = rgb[y_lo:y_hi, x_lo:x_hi]
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._slide.close()


_UM_PER_UNIT = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def _ome_mpp(tf: tifffile.TiffFile, index: int) -> tuple[object, object]:
    """(PhysicalSizeX, PhysicalSizeY) in um of OME image ``index``; (None, None) if absent."""
    if not tf.is_ome or not tf.ome_metadata:
        return None, None
    try:
        images = tifffile.xml2dict(tf.ome_metadata)["OME"]["Image"]
        image = images[index] if isinstance(images, list) else images
        pixels = image["Pixels"]
        out: list[object] = []
        for axis in ("X", "Y"):
            size = pixels.get(f"PhysicalSize{axis}")
            factor = _UM_PER_UNIT.get(str(pixels.get(f"PhysicalSize{axis}Unit", "µm")))
            out.append(None if size is None or factor is None else float(size) * factor)
        return out[0], out[1]
    except (KeyError, IndexError, TypeError, ValueError):
        return None, None


def _inside_window(
    location: tuple[int, int], size: tuple[int, int], downsample: float, level_size: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the part of a region that lies on the slide, in region pixels.

    Uses tiffslide's own level-grid mapping (``int(x / downsample)``); None if nothing does.
    """
    w, h = size
    rx0, ry0 = int(location[0] / downsample), int(location[1] / downsample)
    x_lo, y_lo = min(max(-rx0, 0), w), min(max(-ry0, 0), h)
    x_hi, y_hi = max(min(level_size[0] - rx0, w), 0), max(min(level_size[1] - ry0, h), 0)
    if x_hi <= x_lo or y_hi <= y_lo:
        return None
    return x_lo, y_lo, x_hi, y_hi
