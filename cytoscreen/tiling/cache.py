"""The patch cache: one Zarr v3 store per slide, written by a resumable Dask graph.

The store's layout and records are ``cytoscreen.tiling.store``'s (``PatchStore``).
The graph has one read task per block of patches and one write task per ``images`` chunk;
a write task gathers the blocks its chunk needs, so every chunk is written by exactly one task.
Chunks already marked done are not recomputed, so a killed run resumes where it stopped.
Write tasks encode and store their chunks in the worker thread itself, byte for byte as zarr
would (``cytoscreen.tiling.chunkstore``), rather than through zarr's event-loop thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import dask
import numpy as np
import numpy.typing as npt
import zarr
from dask.callbacks import Callback
from dask.delayed import Delayed

import cytoscreen
from cytoscreen.config import TILING_SECTIONS, Config, local_cluster_size
from cytoscreen.errors import CacheMismatch, ConfigError
from cytoscreen.io import fast_backend, open_slide, slide_key
from cytoscreen.io.base import SlideReader
from cytoscreen.tiling.blocks import Block, SlideSource, read_block
from cytoscreen.tiling.foreground import slide_foreground
from cytoscreen.tiling.grid import GridSpec, block_ranges, build_grid
from cytoscreen.tiling.obscured import ObscuredEstimate
from cytoscreen.tiling.store import (
    FORMAT,
    PatchStore,
    StoreAttrs,
    StoreWriters,
    discard_store,
    store_path,
)
from cytoscreen.types import PatchGrid, SlideMeta

ProgressFn = Callable[[int, int], None]  # (patches done, patches total)
_WRITE_PREFIX = "cytoscreen-write"


def open_cache(path: str | Path) -> PatchStore:
    """Open a patch store read-only, its attributes and per-patch arrays read. Raises
    ``CacheMismatch`` if it is not one."""
    try:
        store = PatchStore.open(path)
    except CacheMismatch as exc:
        raise CacheMismatch(f"not a cytoscreen patch cache ({exc.message})", subject=path) from None
    return store.check()


def _versions(backend: str) -> dict[str, str]:
    from importlib.metadata import version

    lib = {
        "openslide": "openslide-python",
        "tiffslide": "tiffslide",
        "wsidicom": "wsidicom",
    }
    return {
        "cytoscreen": cytoscreen.__version__,
        "zarr": zarr.__version__,
        "dask": dask.__version__,
        backend: version(lib[backend]) if backend in lib else "unknown",
    }


def _matches(path: Path, key: str, config_hash: str) -> bool:
    """True when ``path`` holds a fully set-up store for this slide and configuration."""
    try:
        store = PatchStore.open(path)
        attrs = store.attrs
    except CacheMismatch:
        return False
    return bool(
        store.is_set_up(attrs.n_patches)
        and attrs.format == FORMAT
        and attrs.slide_key == key
        and attrs.config_hash == config_hash
    )


def write_chunk(
    store: str,
    chunk: int,
    start: int,
    stop: int,
    block_starts: Sequence[int],
    blocks: Sequence[Block],
    writers: StoreWriters,
) -> int:
    """Write patches ``[start, stop)`` (one ``images`` chunk) from the blocks that hold them.

    ``blocks`` are ``read_block`` results whose first patch has index ``block_starts[i]``.
    Marks the chunk done last, once its pixels, validity and nucleus counts are stored.
    """
    first = blocks[0][0][0]
    images = np.empty((stop - start, *first.shape), dtype=np.uint8)
    valid = np.zeros(stop - start, dtype=np.bool_)
    nuclei = np.zeros(stop - start, dtype=np.int32)
    for b_start, (patches, ok, counts) in zip(block_starts, blocks, strict=True):
        lo, hi = max(start, b_start), min(stop, b_start + len(patches))
        for j in range(lo, hi):
            images[j - start] = patches[j - b_start]
        valid[lo - start : hi - start] = ok[lo - b_start : hi - b_start]
        nuclei[lo - start : hi - start] = counts[lo - b_start : hi - b_start]
    writers.images.write(chunk, images)
    writers.valid.write(chunk, valid)
    writers.nuclei.write(chunk, nuclei)
    writers.chunk_done.write(chunk, np.ones(1, dtype=np.uint8))
    return stop - start


def _graph(
    path: Path,
    source: SlideSource,
    coords: npt.NDArray[np.int64],
    block_starts: Sequence[int],
    cp: int,
    token: str,
) -> list[Delayed]:
    """Write tasks for the chunks not yet done, and the read tasks of the blocks they need.

    The graph is written out as a plain task mapping: building it through ``dask.delayed``
    calls costs more than running the local scheduler on it.
    """
    store = PatchStore.open(path)
    done = store.chunk_done()
    n = len(coords)
    if n == 0 or not (done == 0).any():
        return []
    writers = store.writers()
    starts = np.asarray(block_starts, dtype=np.int64)
    stops = np.r_[starts[1:], n].astype(np.int64)
    dsk: dict[str, Any] = {}
    keys = []
    for chunk in np.flatnonzero(done == 0).tolist():
        start, stop = chunk * cp, min(n, (chunk + 1) * cp)
        first = int(np.searchsorted(starts, start, side="right")) - 1
        last = int(np.searchsorted(starts, stop, side="left"))
        reads = []
        for b in range(first, last):
            key = f"cytoscreen-read-{token}-{b}"
            if key not in dsk:
                dsk[key] = (read_block, source, coords[starts[b] : stops[b]])
            reads.append(key)
        key = f"{_WRITE_PREFIX}-{token}-{chunk}-{stop - start}"
        b_starts = [int(v) for v in starts[first:last]]
        dsk[key] = (write_chunk, str(path), chunk, start, stop, b_starts, reads, writers)
        keys.append(key)
    return [Delayed(key, dsk) for key in keys]


class _Progress(Callback):
    """Reports patches written as this graph's write tasks finish (local schedulers)."""

    def __init__(self, fn: ProgressFn, done: int, total: int, keys: set[Any]) -> None:
        super().__init__()
        self.fn, self.done, self.total, self.keys = fn, done, total, keys

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if key in self.keys:
            self.done += int(result)
            self.fn(self.done, self.total)


def _run(
    writes: list[Delayed],
    cfg: Config,
    client: Any,
    progress: ProgressFn | None,
    done: int,
    total: int,
) -> None:
    if not writes:
        return
    if client is None and cfg.cache.scheduler_address:
        from distributed import Client

        if local_cluster_size(cfg.cache.scheduler_address) is not None:
            raise ConfigError(
                "a local:N cluster screens whole slides; it does not tile one",
                subject="--scheduler",
                hint="`cytoscreen tile` runs its graph on local threads (--workers) or on a "
                "cluster's scheduler address (tcp://HOST:8786)",
            )
        with Client(cfg.cache.scheduler_address) as own:
            _run(writes, cfg, own, progress, done, total)
        return
    if client is not None:
        from distributed import as_completed

        futures = client.compute(writes)
        for fut in as_completed(futures):
            done += int(fut.result())
            if progress:
                progress(done, total)
        return
    with _Progress(progress, done, total, {w.key for w in writes}) if progress else nullcontext():
        dask.compute(
            *writes, scheduler=_local_scheduler(cfg.cache.scheduler), num_workers=cfg.cache.workers
        )


def _local_scheduler(name: str) -> Callable[..., Any]:
    """A local Dask scheduler as a function. Named by a string, Dask would first import
    ``distributed`` to look for a client (a few hundred ms in every tiling child process)."""
    if name == "threads":
        from dask.threaded import get

        return get
    if name == "processes":
        from dask.multiprocessing import get as get_processes

        return get_processes
    if name == "synchronous":
        from dask.local import get_sync

        return get_sync
    raise ValueError(f"unknown local Dask scheduler {name!r}")


def _plan(
    reader: SlideReader, meta: SlideMeta, cfg: Config
) -> tuple[PatchGrid, ObscuredEstimate | None]:
    """The patch grid of a slide described by ``meta``, its mask read through ``reader``, and
    the obscured share of its cell-bearing area (measured on the mask's view)."""
    fg = slide_foreground(reader, cfg.foreground)
    w, h = meta.dimensions
    spec = GridSpec(
        width=w,
        height=h,
        slide_mpp=meta.mpp,
        target_mpp=cfg.tiling.target_mpp,
        patch_px=cfg.tiling.patch_size,
        overlap_px=cfg.tiling.overlap,
        block_patches=cfg.tiling.block_patches,
        min_fraction=cfg.foreground.min_fraction,
    )
    return build_grid(spec, fg.mask, fg.scale), fg.obscured


def tile_slide(
    path: str | Path,
    cfg: Config,
    cache_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    client: Any = None,
) -> Path:
    """Cut a slide's cell-bearing area into patches and cache them; returns the store path.

    A complete store for the same slide content and tiling configuration is reused as is; a
    partial one is resumed (only missing chunks are written); one made with another
    configuration is rebuilt. ``client`` is a ``distributed.Client``; without one the local
    Dask scheduler named by ``cfg.cache.scheduler`` runs the graph (or a cluster at
    ``cfg.cache.scheduler_address``).
    """
    slide = Path(path)
    key = slide_key(slide, mpp_override=cfg.reader.mpp_override)
    config_hash = cfg.hash(*TILING_SECTIONS)
    out = store_path(cache_dir if cache_dir is not None else cfg.cache.dir, key)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_symlink():
        raise CacheMismatch(
            "the patch store is a symbolic link; refusing to follow it", subject=out
        )
    if _matches(out, key, config_hash):
        store = PatchStore.open(out)
        record = store.complete_record()
        if record is not None and record.get("config_hash") == config_hash:
            n = int(record.get("n_patches", 0))
            if progress:
                progress(n, n)
            return out
        coords = store.coords
        block_starts = list(store.attrs.block_starts)
        meta_backend = str(store.attrs.backend)
    else:
        discard_store(out)
        mpp = cfg.reader.mpp_override
        with open_slide(slide, backend=cfg.reader.backend, mpp=mpp) as reader:
            meta = reader.meta
            # bulk reads (the mask's thumbnail included) go through the fastest backend that
            # gives the same pyramid
            read_backend = (
                fast_backend(slide, meta, mpp) if cfg.reader.backend == "auto" else meta.backend
            )
            if read_backend == meta.backend:
                grid, obscured = _plan(reader, meta, cfg)
        if read_backend != meta.backend:
            with open_slide(slide, backend=read_backend, mpp=mpp) as fast:
                grid, obscured = _plan(fast, meta, cfg)
        attrs = StoreAttrs(
            format=FORMAT,
            slide_key=key,
            slide_name=slide.name,
            backend=read_backend,
            mpp=meta.mpp,
            mpp_source=meta.mpp_source,
            target_mpp=grid.target_mpp,
            patch_size=grid.patch_px,
            size_l0=grid.size_l0,
            stride_l0=grid.stride_l0,
            n_patches=len(grid),
            block_starts=tuple(a for a, _ in block_ranges(grid.block_ids)),
            config_hash=config_hash,
            config={k: cfg.to_dict()[k] for k in TILING_SECTIONS},
            versions=_versions(read_backend),
            # a slide statistic beside the grid: adding it changes no array, so FORMAT stays
            obscured=obscured,
        )
        PatchStore.create(
            out,
            attrs,
            grid.coords,
            grid.foreground,
            chunk_patches=cfg.cache.chunk_patches,
            compression=cfg.cache.compression,
            compression_level=cfg.cache.compression_level,
        )
        coords, meta_backend = grid.coords, read_backend
        block_starts = [a for a, _ in block_ranges(grid.block_ids)]
    source = SlideSource(
        path=str(slide.resolve()),
        backend=meta_backend if cfg.reader.backend == "auto" else cfg.reader.backend,  # type: ignore[arg-type]
        mpp_override=cfg.reader.mpp_override,
        target_mpp=cfg.tiling.target_mpp,
        patch_px=cfg.tiling.patch_size,
        tolerance=cfg.tiling.level_tolerance,
        stride_px=cfg.tiling.patch_size - cfg.tiling.overlap,
    )
    n, cp = len(coords), cfg.cache.chunk_patches
    writes = _graph(out, source, coords, block_starts, cp, f"{key}-{config_hash}")
    pending = sum(int(str(w.key).rsplit("-", 1)[1]) for w in writes)
    if progress:
        progress(n - pending, n)
    _run(writes, cfg, client, progress, n - pending, n)
    PatchStore.open(out).mark_complete(config_hash, n)
    return out


def tile_slides(
    paths: Sequence[str | Path],
    cfg: Config,
    cache_dir: str | Path | None = None,
    progress: Callable[[Path, int, int], None] | None = None,
    client: Any = None,
) -> list[Path]:
    """``tile_slide`` for each slide in turn; ``progress(slide, done, total)`` per slide."""
    out = []
    for p in paths:
        slide = Path(p)
        cb: ProgressFn | None = None
        if progress is not None:
            cb = lambda d, t, s=slide: progress(s, d, t)  # noqa: E731
        out.append(tile_slide(slide, cfg, cache_dir, cb, client))
    return out
