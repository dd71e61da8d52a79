"""``open_slide``: pick a backend for a file, with errors that name the file and say what to do."""

from __future__ import annotations

from pathlib import Path

import tifffile

from cytoscreen.errors import CytoscreenError, MissingMpp, UnreadableSlide
from cytoscreen.io.base import SlideReader
from cytoscreen.io.checks import vet_slide
from cytoscreen.io.dicom import is_dicom_slide, series_of
from cytoscreen.io.openslide_backend import OpenSlideReader
from cytoscreen.io.tiffslide_backend import TiffSlideReader
from cytoscreen.io.wsidicom_backend import WsiDicomReader
from cytoscreen.types import BACKENDS, BackendName, BackendSetting, SlideMeta

BackendChoice = BackendSetting  # the name this module has always used


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UnreadableSlide(
            "no such file", subject=path, hint="check the path (and the manifest, if one was used)"
        )
    if path.is_dir() and not is_dicom_slide(path):
        raise UnreadableSlide(
            "a folder with no DICOM (.dcm) files: not a slide",
            subject=path,
            hint="give a slide file, or a folder holding one DICOM whole-slide series",
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
    """Open a whole-slide image: a file, or a folder holding one DICOM WSI series.

    ``auto`` tries OpenSlide first (vendor formats: SVS, NDPI, MRXS, SCN, BIF, tiled TIFF)
    and falls back to tiffslide for TIFFs OpenSlide refuses (stripped, JPEG 2000); OME-TIFFs go
    to tiffslide, which also reads their SubIFD pyramid. A DICOM slide (a folder of ``.dcm``
    files, or one of them) goes to wsidicom, which reads the same pixels as OpenSlide about
    3x faster (docs/performance.md, "DICOM readers"), or to OpenSlide when wsidicom cannot
    open it (a series without pixel spacing); ``openslide`` reads it too. ``mpp``
    overrides the slide's own resolution (micrometres per level-0 pixel).

    Raises ``UnreadableSlide`` (missing, empty or non-slide file; a size no glass slide has; pixels
    that are not 8-bit RGB(A), see ``cytoscreen.io.checks``; a DICOM folder with more than one
    series, missing instances or a non-WSI object, see ``cytoscreen.io.dicom``), ``MissingMpp``
    (no resolution recorded and no ``mpp``) or ``InvalidMpp`` (implausible ``mpp``), each naming
    the file.
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
    if backend not in BACKENDS:
        choices = f"{', '.join(BACKENDS[:-1])} or {BACKENDS[-1]}"
        raise ValueError(f"backend must be {choices}, got {backend!r}")
    if is_dicom_slide(p):
        if backend == "tiffslide":
            raise UnreadableSlide(
                "tiffslide does not read DICOM",
                subject=p,
                hint="use --backend auto (wsidicom) or --backend openslide",
            )
        series = series_of(p)  # a folder that is not one whole series fails here, named
        if backend == "openslide":
            return OpenSlideReader(p, mpp=mpp, series=series)
        if backend == "wsidicom":
            return WsiDicomReader(p, mpp=mpp, series=series)
        try:
            return WsiDicomReader(p, mpp=mpp, series=series)
        except UnreadableSlide as first:
            # wsidicom needs a pixel spacing to build its pyramid; OpenSlide then opens the
            # series and asks for --mpp, or reads what wsidicom could not
            try:
                return OpenSlideReader(p, mpp=mpp, series=series)
            except UnreadableSlide as second:
                raise UnreadableSlide(
                    f"not a readable DICOM slide (wsidicom: {first.message}; "
                    f"OpenSlide: {second.message})",
                    subject=p,
                ) from second
    if backend == "wsidicom":
        raise UnreadableSlide(
            "wsidicom reads DICOM series only (a folder of .dcm files)",
            subject=p,
            hint="use --backend auto, openslide or tiffslide for this file",
        )
    if backend == "openslide":
        return OpenSlideReader(p, mpp=mpp)
    if backend == "tiffslide":
        return TiffSlideReader(p, mpp=mpp)
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
    pyramid and resolution as ``meta`` and every level is a plain tiled page. A DICOM series is
    read with wsidicom. Otherwise the backend that produced ``meta`` is kept.
    """
    if meta.backend == "tiffslide":
        return "tiffslide"
    if is_dicom_slide(path):  # tiffslide reads no DICOM; auto chose wsidicom when it opens it
        return meta.backend
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
