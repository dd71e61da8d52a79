"""Benchmark the tiler against the raw JPEG-decode rate of the same slide.

Writes (or reuses) a generated liquid-based slide (cytoscreen.synth, real CRIC cells, default
density) of --size x --size px at 0.25 um/px, then measures in one run:

  tiler       cytoscreen.tiling.tile_slide end to end (slide key, foreground, block reads,
              nucleus counts, Zarr writes), once per cache codec: lz4 (default), none, zstd
  raw decode  tifffile + imagecodecs decode of every tile of the pyramid level the tiler reads,
              on as many threads as the tiler's Dask workers
  naive loop  OpenSlide read_region of each 224-px patch, one at a time, one thread

and prints patches/s, MPix/s and the ratio tiler / raw decode (goal >= 0.6).

    python scripts/bench_tiling.py --size 10000
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openslide
import tifffile

from cytoscreen.config import load_config
from cytoscreen.io import open_slide
from cytoscreen.io.resolution import best_level
from cytoscreen.synth import SlideSpec, generate_slide, load_cell_kit
from cytoscreen.tiling.cache import open_cache, tile_slide

MPP = 0.25


def make_slide(path: Path, size: int) -> None:
    """A generated liquid-based slide (real CRIC cells, default density) of size x size px."""
    spec = SlideSpec(size=size, label="positive", seed=size % 9973)
    generate_slide(path, spec, load_cell_kit())


def bench_tiler(
    path: Path, cache: Path, workers: int, backend: str, compression: str
) -> tuple[float, int, int]:
    cfg = load_config(
        overrides={
            "cache.workers": workers,
            "reader.backend": backend,
            "cache.compression": compression,
        }
    )
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    store = tile_slide(path, cfg, cache)
    elapsed = time.perf_counter() - t0
    n = len(open_cache(store))
    return elapsed, n, cfg.tiling.patch_size


def tiles_under_patches(path: Path, level: int, store: Path) -> list[int]:
    """Indices of the tiles of ``level`` that the cached patches cover (what the tiler decodes)."""
    cache = open_cache(store)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[level]
        assert isinstance(page, tifffile.TiffPage)
        tw, th, across = page.tilewidth, page.tilelength, -(-page.imagewidth // page.tilewidth)
    ds = 2**level
    side = cache.attrs["size_l0"] / ds
    out: set[int] = set()
    for x, y in cache.coords / ds:
        for ty in range(int(y // th), int((y + side - 1) // th) + 1):
            for tx in range(int(x // tw), int((x + side - 1) // tw) + 1):
                out.add(ty * across + tx)
    return sorted(out)


def bench_raw_decode(
    path: Path, level: int, workers: int, only: list[int] | None = None
) -> tuple[float, int, int]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[level]
        assert isinstance(page, tifffile.TiffPage)
        fh = tif.filehandle
        offsets, counts = list(page.dataoffsets), list(page.databytecounts)
        if only is not None:
            offsets, counts = [offsets[i] for i in only], [counts[i] for i in only]
        segments = [
            (data, only[i] if only is not None else index)
            for i, (data, index) in enumerate(fh.read_segments(offsets, counts, sort=True))
        ]
        decode = page.decode
        tables = page.jpegtables

        def work(item: tuple[bytes | None, int]) -> int:
            data, index = item
            out, _, shape = decode(data, index, jpegtables=tables)
            return int(np.prod(shape[1:3])) if out is not None else 0

        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            pixels = sum(pool.map(work, segments))
        elapsed = time.perf_counter() - t0
    return elapsed, len(segments), pixels


def bench_naive(path: Path, level: int, patch: int, budget_s: float) -> tuple[float, int]:
    slide = openslide.OpenSlide(str(path))
    ds = int(round(slide.level_downsamples[level]))
    w, h = slide.level_dimensions[level]
    n = 0
    t0 = time.perf_counter()
    for y in range(0, h - patch + 1, patch):
        for x in range(0, w - patch + 1, patch):
            slide.read_region((x * ds, y * ds), level, (patch, patch))
            n += 1
            if time.perf_counter() - t0 > budget_s:
                return time.perf_counter() - t0, n
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=40_000, help="slide side in level-0 pixels")
    ap.add_argument("--workdir", type=Path, default=None, help="where the slide and cache go")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--backend", default="auto", choices=["auto", "openslide", "tiffslide"])
    ap.add_argument("--naive-seconds", type=float, default=20.0, help="time cap of the naive loop")
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.gettempdir()) / "cytoscreen-bench"
    work.mkdir(parents=True, exist_ok=True)
    slide = work / f"synth-{args.size}.tiff"
    if not slide.exists():
        t0 = time.perf_counter()
        make_slide(slide, args.size)
        print(f"wrote {slide} in {time.perf_counter() - t0:.1f} s")
    cfg = load_config()
    with open_slide(slide) as reader:
        meta = reader.meta
        level = best_level(
            [meta.level_mpp(i) for i in range(meta.level_count)],
            cfg.tiling.target_mpp,
            cfg.tiling.level_tolerance,
        )
    load = os.getloadavg()[0]
    tiled = {
        c: bench_tiler(slide, work / "cache", args.workers, args.backend, c)
        for c in ("lz4", "none", "zstd")
    }
    store = tile_slide(slide, load_config(), work / "cache")
    t_raw, n_tiles, raw_px = bench_raw_decode(slide, level, args.workers)
    used = tiles_under_patches(slide, level, store)
    t_fg, n_fg, fg_px = bench_raw_decode(slide, level, args.workers, only=used)
    t_naive, n_naive = bench_naive(slide, level, tiled["lz4"][2], args.naive_seconds)
    raw_mpix = raw_px / 1e6 / t_raw
    fg_mpix = fg_px / 1e6 / t_fg
    print(
        f"\nslide {args.size} x {args.size} px at {MPP} um/px; level read {level}; "
        f"{args.workers} workers; tiler backend {args.backend}; "
        f"load average before {load:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'method':<34}{'units':>10}{'seconds':>10}{'units/s':>12}{'MPix/s':>10}")
    p = tiled["lz4"][2]
    rows = [
        (f"tiler, cache {c} (patches)", n, t, n * p * p / 1e6 / t) for c, (t, n, p) in tiled.items()
    ]
    rows += [
        ("raw decode, all tiles of the level", n_tiles, t_raw, raw_mpix),
        ("raw decode, tiles under patches", n_fg, t_fg, fg_mpix),
        ("naive read_region (patches)", n_naive, t_naive, n_naive * p * p / 1e6 / t_naive),
    ]
    for name, units, secs, mpix in rows:
        print(f"{name:<34}{units:>10}{secs:>10.2f}{units / secs:>12.1f}{mpix:>10.1f}")
    for name, _, _, mpix in rows[: len(tiled)]:
        print(
            f"ratio {name} / raw decode (MPix/s): {mpix / raw_mpix:.2f} of all tiles, "
            f"{mpix / fg_mpix:.2f} of the tiles under patches (goal >= 0.6)"
        )


if __name__ == "__main__":
    main()
