"""Read one block of patches with a single region read (run inside Dask tasks).

A block is a group of neighbouring patches. Its bounding region is read once, at the native
pyramid level nearest the target resolution (``cytoscreen.io.resolution.plan_read``), resampled
once if that level is not within tolerance, and cut into patches. Through tiffslide's direct
tile path only the tiles under some patch are decoded (each once); the corners of a partial
block's bounding box stay white. Readers are not picklable, so tasks carry a ``SlideSource``
(path + options) and each thread opens and keeps its own.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cytoscreen.io import open_slide
from cytoscreen.io.base import RGBArray, SlideReader
from cytoscreen.io.resolution import plan_read, resample
from cytoscreen.io.tiffslide_backend import TiffSlideReader
from cytoscreen.tiling.nuclei import count_per_patch
from cytoscreen.types import BackendSetting

log = logging.getLogger(__name__)

# support, in input pixels per output pixel, of the filter of io.resolution.resample (Lanczos-3)
_LANCZOS_LOBES = 3

Patches = Sequence[npt.NDArray[np.uint8]]  # n arrays of (P, P, 3), often views of one canvas


@dataclass(frozen=True)
class SlideSource:
    """Everything a worker needs to (re)open a slide and read patches from it."""

    path: str
    backend: BackendSetting
    mpp_override: float | None
    target_mpp: float
    patch_px: int
    tolerance: float
    stride_px: int = 0  # patch stride at the target mpp (0: patches do not overlap)


_local = threading.local()


def _file_stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def reader_for(source: SlideSource) -> SlideReader:
    """This thread's reader for ``source``: opened on first use, reopened if the file changed."""
    readers: dict[tuple[object, ...], SlideReader] = getattr(_local, "readers", None) or {}
    _local.readers = readers
    key = (source.path, source.backend, source.mpp_override, _file_stamp(source.path))
    reader = readers.get(key)
    if reader is None:
        for old_key in [k for k in readers if k[0] == source.path]:
            readers.pop(old_key).close()
        reader = open_slide(source.path, backend=source.backend, mpp=source.mpp_override)
        readers[key] = reader
    return reader


def close_readers() -> None:
    """Close the readers this thread keeps open."""
    readers: dict[tuple[object, ...], SlideReader] = getattr(_local, "readers", None) or {}
    while readers:
        readers.popitem()[1].close()


def patch_offsets(coords: npt.NDArray[np.int64], ratio: float) -> npt.NDArray[np.int64]:
    """Pixel offsets, at the target resolution, of each patch inside its block's canvas.

    ``ratio`` is level-0 pixels per target pixel; the canvas starts at the block's minimum
    level-0 corner.
    """
    c = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    rel = (c - c.min(axis=0)) / ratio
    return np.rint(rel).astype(np.int64)


def patch_windows(
    offsets: npt.NDArray[np.int64], patch_px: int, scale: float
) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of each patch in the pixels of the level read (``scale`` level pixels per
    output pixel), widened by the support of the resampling filter when ``scale`` is not 1, so
    that level pixels outside all windows never reach a patch."""
    if scale == 1.0:
        return [(x, y, patch_px, patch_px) for x, y in offsets.tolist()]
    margin = math.ceil(_LANCZOS_LOBES * max(scale, 1.0)) + 2
    side = math.ceil(patch_px * scale) + 2 * margin
    return [
        (math.floor(x * scale) - margin, math.floor(y * scale) - margin, side, side)
        for x, y in offsets.tolist()
    ]


def cut_patches(canvas: RGBArray, offsets: npt.NDArray[np.int64], patch_px: int) -> Patches:
    """``patch_px`` squares at (x, y) ``offsets`` of ``canvas``, as views (copied once, when
    the write task gathers them into a chunk)."""
    return [canvas[y : y + patch_px, x : x + patch_px] for x, y in offsets.tolist()]


Block = tuple[Patches, npt.NDArray[np.bool_], npt.NDArray[np.int32]]


def forget_reader(source: SlideSource) -> None:
    """Close and drop this thread's reader for ``source`` (OpenSlide keeps a handle unusable
    after its first read error, so the next read must reopen the file)."""
    readers: dict[tuple[object, ...], SlideReader] = getattr(_local, "readers", None) or {}
    for key in [k for k in readers if k[0] == source.path]:
        with contextlib.suppress(Exception):  # a broken handle may fail to close: drop it
            readers.pop(key).close()


def _read_patches(source: SlideSource, coords: npt.NDArray[np.int64]) -> Block:
    """One region read covering ``coords``, cut into patches (raises on any read failure)."""
    n, p = len(coords), source.patch_px
    reader = reader_for(source)
    ratio = source.target_mpp / reader.meta.mpp
    offsets = patch_offsets(coords, ratio)
    width, height = (int(v) for v in offsets.max(axis=0) + p)
    origin = np.asarray(coords, dtype=np.int64).reshape(-1, 2).min(axis=0)
    plan = plan_read(
        reader.meta,
        (int(origin[0]), int(origin[1])),
        (width, height),
        source.target_mpp,
        source.tolerance,
    )
    if isinstance(reader, TiffSlideReader):  # decode only the tiles under some patch
        needed = patch_windows(offsets, p, plan.scale)
        region = reader.read_region(plan.location, plan.level, plan.size, needed=needed)
    else:
        region = reader.read_region(plan.location, plan.level, plan.size)
    canvas = resample(region, plan.out_size)
    stride = source.stride_px or p
    nuclei = count_per_patch(canvas, source.target_mpp, offsets, p, stride)
    return cut_patches(canvas, offsets, p), np.ones(n, dtype=np.bool_), nuclei


def _read_one_by_one(source: SlideSource, coords: npt.NDArray[np.int64]) -> Block:
    """Each patch read on its own, so one damaged tile costs only the patches that touch it.
    A patch that cannot be read comes back white with ``valid`` False."""
    n, p = len(coords), source.patch_px
    white = np.full((p, p, 3), 255, dtype=np.uint8)
    patches: list[npt.NDArray[np.uint8]] = [white] * n
    valid = np.zeros(n, dtype=np.bool_)
    nuclei = np.zeros(n, dtype=np.int32)
    for i in range(n):
        try:
            reader_for(source)
        except Exception:  # noqa: BLE001 - the file cannot even be opened: stop retrying
            break
        try:
            one, _, count = _read_patches(source, coords[i : i + 1])
        except Exception:  # noqa: BLE001 - this patch touches damaged data
            forget_reader(source)
            continue
        patches[i], valid[i], nuclei[i] = one[0], True, count[0]
    return patches, valid, nuclei


def read_block(source: SlideSource, coords: npt.NDArray[np.int64]) -> Block:
    """Patches at level-0 ``coords`` (top-left corners), whether each could be read, and the
    number of nuclei counted in each (``cytoscreen.tiling.nuclei``).

    A failed read (corrupt tile, truncated file) does not stop the slide: the block is read
    again patch by patch, and the patches that still fail come back white with ``valid``
    False, so they are never scored as real tissue while the rest of the block is kept.
    """
    n = len(coords)
    try:
        return _read_patches(source, coords)
    except Exception as exc:  # noqa: BLE001 - any reader failure: retry patch by patch
        forget_reader(source)
        block = _read_one_by_one(source, coords)
        log.warning(
            "%s: could not read the block of %d patches at level-0 %s (%s); read one by one, "
            "%d are unreadable and marked invalid",
            source.path,
            n,
            tuple(int(v) for v in np.asarray(coords).reshape(-1, 2).min(axis=0)) if n else (),
            exc,
            int((~block[1]).sum()),
        )
        return block
