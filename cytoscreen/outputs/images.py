"""Slide pictures: thumbnail with the ranked fields, score heatmap overlay, field images.

The raster and drawing functions are pure (arrays in, arrays out); ``render_slide_images``
reads the slide (pyramid levels only: label and macro images are never opened) and writes PNGs.
It runs in a child process in ``cytoscreen screen``, because it reads the slide natively.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from cytoscreen.fsutil import write_bytes_atomic
from cytoscreen.io import open_slide, read_at_mpp
from cytoscreen.tiling.foreground import read_thumbnail
from cytoscreen.types import SuspiciousField

THUMB_PX = 1024  # longer side of thumbnail.png / heatmap.png
FIELD_MARGIN = 0.25  # field image margin, in patch sides
FIELD_MAX_PX = 2048
HEAT_ALPHA = 0.6
HEAT_CMAP = "turbo"
FAINT_SHARE = 0.35  # opacity of a score-0 patch, as a share of HEAT_ALPHA
LEGEND_PX = 52  # height of the colour bar under heatmap.png
BOX_COLOR = (0, 200, 255)
RGB = npt.NDArray[np.uint8]


def score_raster(
    prob: npt.ArrayLike,
    coords: npt.ArrayLike,
    size_l0: float,
    scale: float,
    shape: tuple[int, int],
) -> npt.NDArray[np.float32]:
    """Patch scores painted on a (height, width) grid of ``scale`` level-0 px per pixel.

    Pixels under no scored patch are NaN; where patches overlap the higher score wins.
    """
    h, w = shape
    out = np.full((h, w), np.nan, dtype=np.float32)
    p = np.asarray(prob, dtype=np.float32).reshape(-1)
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    x0 = np.clip(np.floor(xy[:, 0] / scale), 0, w).astype(int)
    y0 = np.clip(np.floor(xy[:, 1] / scale), 0, h).astype(int)
    x1 = np.clip(np.ceil((xy[:, 0] + size_l0) / scale), 0, w).astype(int)
    y1 = np.clip(np.ceil((xy[:, 1] + size_l0) / scale), 0, h).astype(int)
    for i in np.flatnonzero(np.isfinite(p)):
        region = out[y0[i] : y1[i], x0[i] : x1[i]]
        np.fmax(region, p[i], out=region)
    return out


def overlay(thumb: RGB, raster: npt.NDArray[np.float32], alpha: float = HEAT_ALPHA) -> RGB:
    """Blend a colour-mapped score raster (0-1, NaN = transparent) onto an RGB thumbnail.

    Opacity grows with the score (``FAINT_SHARE`` of ``alpha`` at 0, ``alpha`` at 1), so the
    slide stays visible under the many low-scoring patches and high scores stand out.
    """
    from matplotlib import colormaps

    if raster.shape != thumb.shape[:2]:
        raise ValueError(f"raster {raster.shape} does not match thumbnail {thumb.shape[:2]}")
    score = np.clip(np.nan_to_num(raster, nan=0.0), 0.0, 1.0)
    colours = colormaps[HEAT_CMAP](score)[..., :3]
    a = np.where(np.isfinite(raster), alpha * (FAINT_SHARE + (1.0 - FAINT_SHARE) * score), 0.0)
    a = a[..., None]
    out = thumb.astype(np.float32) * (1.0 - a) + colours * 255.0 * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def heat_legend(width: int, threshold: float | None = None, height: int = LEGEND_PX) -> RGB:
    """A colour bar for the heatmap: the score scale 0-1 with ticks, and the slide threshold.

    The slide score is an aggregate of patch scores on the same 0-1 scale, so the threshold is
    marked on the same bar.
    """
    from matplotlib import colormaps

    width = max(int(width), 64)
    pad = 8
    bar_w = width - 2 * pad
    ramp = colormaps[HEAT_CMAP](np.linspace(0.0, 1.0, bar_w))[:, :3]
    img = np.full((height, width, 3), 255, np.uint8)
    bar_top, bar_h = 16, 10
    img[bar_top : bar_top + bar_h, pad : pad + bar_w] = np.rint(ramp * 255).astype(np.uint8)
    pil = Image.fromarray(img, mode="RGB")
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default()
    draw.text((pad, 2), "patch score: probability of an abnormal cell", fill=(0, 0, 0), font=font)
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = pad + v * (bar_w - 1)
        draw.line([(x, bar_top + bar_h), (x, bar_top + bar_h + 3)], fill=(0, 0, 0))
        _centred_text(draw, f"{v:g}", x, bar_top + bar_h + 4, width, font)
    if threshold is not None and math.isfinite(threshold):
        x = pad + float(np.clip(threshold, 0.0, 1.0)) * (bar_w - 1)
        draw.line([(x, bar_top - 3), (x, bar_top + bar_h + 1)], fill=(0, 0, 0), width=2)
        _centred_text(draw, f"slide threshold {threshold:.3g}", x, height - 12, width, font)
    return np.asarray(pil, dtype=np.uint8)


def _centred_text(
    draw: ImageDraw.ImageDraw, label: str, x: float, y: float, width: int, font: Any
) -> None:
    """``label`` in black centred on ``x``, kept inside an image ``width`` pixels wide."""
    tw = draw.textlength(label, font=font)
    draw.text((min(max(0.0, x - tw / 2), width - tw), y), label, fill=(0, 0, 0), font=font)


def draw_fields(image: RGB, fields: Sequence[SuspiciousField], scale: float) -> RGB:
    """Field boxes with their rank numbers drawn on a picture of ``scale`` level-0 px/pixel."""
    pil = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default()
    for f in fields:
        box = (f.x0 / scale, f.y0 / scale, f.x1 / scale, f.y1 / scale)
        draw.rectangle(box, outline=BOX_COLOR, width=2)
        draw.text((box[0] + 2, max(0.0, box[1] - 12)), str(f.rank), fill=BOX_COLOR, font=font)
    return np.asarray(pil, dtype=np.uint8)


def png_bytes(image: RGB) -> bytes:
    buf = io.BytesIO()
    # zlib level 1: as lossless as the default 6, 2.5x faster to write, files 16% larger
    # (the 22 images of the 40k bench slide: 1.04 -> 0.41 s, 5.6 -> 6.5 MB)
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(
        buf, format="PNG", compress_level=1
    )
    return buf.getvalue()


def field_window(
    f: SuspiciousField, size_l0: float, l0_per_px: float, margin: float = FIELD_MARGIN
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Level-0 top-left and output (width, height) of a field's image with its margin."""
    m = margin * size_l0
    x, y = math.floor(f.x0 - m), math.floor(f.y0 - m)
    w = min(FIELD_MAX_PX, max(1, round((f.x1 - f.x0 + 2 * m) / l0_per_px)))
    h = min(FIELD_MAX_PX, max(1, round((f.y1 - f.y0 + 2 * m) / l0_per_px)))
    return (x, y), (w, h)


def render_slide_images(
    slide: str | Path,
    out_dir: str | Path,
    *,
    backend: str,
    mpp_override: float | None,
    target_mpp: float,
    tolerance: float,
    prob: npt.NDArray[np.float32],
    coords: npt.NDArray[np.int64],
    size_l0: float,
    fields: Sequence[SuspiciousField],
    threshold: float | None = None,
) -> list[str]:
    """Write thumbnail.png, heatmap.png (with a colour bar marking the slide ``threshold``)
    and fields/<rank>.png; return the names written."""
    out = Path(out_dir)
    written = []
    # PNG encoding (zlib, which releases the GIL) is most of the time: the images are encoded
    # and written on two threads while the next ones are read and drawn here
    with (
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="cytoscreen-png") as writers,
        open_slide(slide, backend=backend, mpp=mpp_override) as reader,  # type: ignore[arg-type]
    ):
        pending: list[Future[None]] = []

        def write(name: str, image: RGB) -> None:
            pending.append(writers.submit(_write_png, out / name, image))
            written.append(name)

        meta = reader.meta
        thumb_mpp = max(meta.mpp, meta.mpp * max(meta.dimensions) / THUMB_PX)
        thumb = read_thumbnail(reader, thumb_mpp, tolerance)
        scale = thumb_mpp / meta.mpp  # level-0 px per thumbnail px
        write("thumbnail.png", draw_fields(thumb, fields, scale))
        raster = score_raster(prob, coords, size_l0, scale, thumb.shape[:2])
        heat = draw_fields(overlay(thumb, raster), fields, scale)
        write("heatmap.png", np.vstack([heat, heat_legend(heat.shape[1], threshold)]))
        l0_per_px = target_mpp / meta.mpp
        for f in fields:
            loc, size = field_window(f, size_l0, l0_per_px)
            write(f"fields/{f.rank}.png", read_at_mpp(reader, loc, size, target_mpp, tolerance))
        for done in pending:
            done.result()  # a failed write raises here
    return written


def _write_png(path: Path, image: RGB) -> None:
    write_bytes_atomic(path, png_bytes(image))
