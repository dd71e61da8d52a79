"""Checks made when a slide is opened, before any pixels are read.

Two rules (see docs/usage.md, "Input formats"):

* Pixel format: only 8-bit unsigned RGB (or YCbCr, as JPEG tiles store it) slides are screened,
  optionally with an alpha channel, which is composited onto white. Greyscale, 16-bit or
  floating-point, CMYK, palette and multi-channel (fluorescence) images are refused: the model
  was trained on colour brightfield Pap stains and would score anything else meaninglessly.
* Size: a level-0 image larger than a glass slide (``MAX_SIDE_MM`` per side) or with more than
  ``MAX_PIXELS`` pixels is refused before anything proportional to its size is allocated. A
  damaged or malicious header can claim any size in a file of a few kilobytes.

The rules are pure functions (``pixel_format_problem``, ``size_problem``); ``vet_slide`` reads
the TIFF tags and raises ``UnreadableSlide`` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import tifffile

from cytoscreen.errors import UnreadableSlide
from cytoscreen.types import SlideMeta

MAX_SIDE_MM = 160.0  # a 2 x 3 inch glass slide is 76 x 51 mm
MAX_PIXELS = 400_000_000_000  # 75 x 25 mm at 0.06 um/px; no scanner writes more

COLOUR_PHOTOMETRICS = frozenset({"RGB", "YCBCR"})
_DESCRIBED = {
    "MINISBLACK": "greyscale",
    "MINISWHITE": "greyscale (inverted)",
    "SEPARATED": "CMYK (separated)",
    "PALETTE": "palette colour",
    "CIELAB": "CIE L*a*b*",
}
FORMAT_HINT = (
    "cytoscreen screens 8-bit RGB brightfield scans only; export or convert the slide to 8-bit "
    "RGB (for example `vips colourspace IN OUT srgb` then `vips cast OUT OUT8 uchar`) and screen "
    "the converted file"
)
SIZE_HINT = (
    "the header is damaged or not a glass-slide scan; copy the slide again from the scanner, or "
    "check its resolution (--mpp) if it was guessed"
)


def pixel_format_problem(
    photometric: str, bits_per_sample: int, samples: int, sample_format: str, extra_samples: int
) -> str | None:
    """Why pixels of this TIFF format are not screened, or None when they are.

    ``photometric``/``sample_format`` are TIFF enum names (``RGB``, ``UINT``); ``samples``
    counts every sample per pixel, ``extra_samples`` those that are not colour (alpha).
    """
    what = _DESCRIBED.get(photometric, photometric.lower())
    colour = samples - extra_samples
    if photometric not in COLOUR_PHOTOMETRICS:
        return f"its pixels are {what} ({samples} sample(s) per pixel), not RGB colour"
    if colour != 3 or extra_samples > 1:
        return f"its pixels have {samples} samples ({extra_samples} extra), not RGB or RGBA"
    if sample_format != "UINT" or bits_per_sample != 8:
        kind = {"IEEEFP": "floating-point", "INT": "signed"}.get(sample_format, "unsigned")
        return f"its pixels are {bits_per_sample}-bit {kind} samples, not 8-bit"
    return None


def size_problem(width: int, height: int, mpp_x: float, mpp_y: float) -> str | None:
    """Why a level-0 image of this size is implausible for a glass slide, or None."""
    if width <= 0 or height <= 0:
        return f"it claims an empty image ({width} x {height} px)"
    side_mm = max(width * mpp_x, height * mpp_y) / 1000.0
    if side_mm > MAX_SIDE_MM:
        return (
            f"its header claims {width:,} x {height:,} px, {side_mm:,.0f} mm at "
            f"{mpp_x:g} um/px: larger than any glass slide (limit {MAX_SIDE_MM:g} mm)"
        )
    if width * height > MAX_PIXELS:
        return (
            f"its header claims {width:,} x {height:,} px, more than the "
            f"{MAX_PIXELS:,} pixels of any scanner"
        )
    return None


def _main_page(tf: tifffile.TiffFile, dimensions: tuple[int, int]) -> tifffile.TiffPage | None:
    """The level-0 page of the series that holds the slide (the one of ``dimensions``)."""
    first: tifffile.TiffPage | None = None
    for series in tf.series:
        page = series.keyframe
        if not isinstance(page, tifffile.TiffPage):
            continue
        first = first or page
        if (page.imagewidth, page.imagelength) == dimensions:
            return page
    return first


def tiff_pixel_problem(path: Path, dimensions: tuple[int, int]) -> str | None:
    """``pixel_format_problem`` of the slide's level-0 TIFF page; None for non-TIFF files."""
    try:
        with tifffile.TiffFile(path) as tf:
            page = _main_page(tf, dimensions)
            if page is None:
                return None
            extra = len(tuple(page.extrasamples or ()))
            return pixel_format_problem(
                tifffile.PHOTOMETRIC(int(page.photometric)).name,
                int(page.bitspersample),
                int(page.samplesperpixel),
                tifffile.SAMPLEFORMAT(int(page.sampleformat)).name,
                extra,
            )
    except (OSError, ValueError, AttributeError, tifffile.TiffFileError):
        return None  # not a TIFF (MRXS, DICOM...): the backend decoded it to RGB itself


def vet_slide(path: Path, meta: SlideMeta) -> None:
    """Raise ``UnreadableSlide`` (naming ``path``) for an implausible size or pixel format."""
    width, height = meta.dimensions
    size = size_problem(width, height, meta.mpp_x, meta.mpp_y)
    if size is not None:
        raise UnreadableSlide(size, subject=path, hint=SIZE_HINT)
    pixels = tiff_pixel_problem(path, meta.dimensions)
    if pixels is not None:
        raise UnreadableSlide(pixels, subject=path, hint=FORMAT_HINT)
