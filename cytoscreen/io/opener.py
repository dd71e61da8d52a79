"""``open_slide``: pick a backend for a file, with errors that name the file and say what to do."""

from __future__ import annotations

from pathlib import Path

import tifffile

from cytoscreen.errors import CytoscreenError, MissingMpp, UnreadableSlide
from cytoscreen.io.base import SlideReader
from cytoscreen.io.checks import vet_slide
from cytoscreen.io.openslide_backend import OpenSlideReader
from cytoscreen.io.tiffslide_backend import TiffSlideReader
from cytoscreen.types import BACKENDS, BackendName, BackendSetting, SlideMeta

BackendChoice = BackendSetting  # the name this module has always used


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UnreadableSlide(
            "no such file", subject=path, hint="check the path (and the manifest, if one was used)"
        )
    if path.is_file() and path.stat().st_size == 0:
        raise UnreadableSlide(
            "the file is empty (0 bytes)",
            subject=path,
            hint="the copy or download was probably interrupted; copy the slide again",
        )


def open_slide(
    path: str | Path, backend: BackendChoice = "auto", mpp: float | None = None
) -> SlideReader:
    """Open a whole-slide image.

    ``auto`` tries OpenSlide first (vendor formats: SVS, NDPI, MRXS, SCN, BIF, DICOM, tiled TIFF)
    and falls back to tiffslide for TIFFs OpenSlide refuses (stripped, JPEG 2000); OME-TIFFs go
    to tiffslide, which also reads their SubIFD pyramid. ``mpp``
    overrides the slide's own resolution (micrometres per level-0 pixel).

    Raises ``UnreadableSlide`` (missing, empty or non-slide file; a size no glass slide has; pixels
    that are not 8-bit RGB(A), see ``cytoscreen.io.checks``), ``MissingMpp`` (no resolution
    recorded and no ``mpp``) or ``InvalidMpp`` (implausible ``mpp``), each naming the file.
    """
    p = Path(path)
    _check_file(p)
    reader = _open(p, backend, mpp)
    try:
        vet_slide(p, reader.meta)
    except BaseException:
        reader.close()
        raise
    return reader


def _open(p: Path, backend: BackendChoice, mpp: float | None) -> SlideReader:
    if backend == "openslide":
        return OpenSlideReader(p, mpp=mpp)
    if backend == "tiffslide":
        return TiffSlideReader(p, mpp=mpp)
    if backend != "auto":
        choices = f"{', '.join(BACKENDS[:-1])} or {BACKENDS[-1]}"
        raise ValueError(f"backend must be {choices}, got {backend!r}")
    try:
        reader: SlideReader = OpenSlideReader(p, mpp=mpp)
    except UnreadableSlide as first:
        try:
            return TiffSlideReader(p, mpp=mpp)
        except UnreadableSlide as second:
            raise UnreadableSlide(
                f"not a readable whole-slide image (OpenSlide: {first.message}; "
                f"tiffslide: {second.message})",
                subject=p,
            ) from second
    except MissingMpp as no_mpp:
        # tiffslide also reads OME-XML and other TIFF metadata that OpenSlide ignores
        try:
            return TiffSlideReader(p, mpp=mpp)
        except CytoscreenError:
            raise no_mpp from None
    if reader.meta.vendor == "generic-tiff" and _is_ome_tiff(p):
        # OpenSlide reads only level 0 of an OME-TIFF (its pyramid lives in SubIFDs)
        reader.close()
        return TiffSlideReader(p, mpp=mpp)
    return reader


def _is_ome_tiff(path: Path) -> bool:
    try:
        with tifffile.TiffFile(path) as tf:
            return bool(tf.is_ome)
    except (OSError, ValueError, tifffile.TiffFileError):
        return False


def fast_backend(path: str | Path, meta: SlideMeta, mpp: float | None = None) -> BackendName:
    """The backend that reads this slide's pixels fastest for bulk (tiling) reads.

    tiffslide's direct tile path decodes each tile once with positional reads and scales across
    threads (see ``cytoscreen.io.tiles``); it is chosen when it opens the file with the same
    pyramid and resolution as ``meta`` and every level is a plain tiled page. Otherwise the
    backend that produced ``meta`` is kept.
    """
    if meta.backend == "tiffslide":
        return "tiffslide"
    try:
        with TiffSlideReader(Path(path), mpp=mpp) as ts:
            same = (
                ts.meta.level_dimensions == meta.level_dimensions
                and abs(ts.meta.mpp - meta.mpp) < 1e-6
                and ts.has_direct_tiles
            )
    except CytoscreenError:
        return meta.backend
    return "tiffslide" if same else meta.backend
