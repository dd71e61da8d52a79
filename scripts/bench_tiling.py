"""Benchmark the tiler against the raw JPEG-decode rate of the same slide.

Writes (or reuses) a synthetic pyramidal TIFF of --size x --size px at 0.25 um/px, densely
covered with stained cells, then measures in one run:

  tiler       cytoscreen.tiling.tile_slide (foreground, block reads, zstd Zarr writes)
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
from cytoscreen.synth.tiffwriter import write_pyramidal_tiff
from cytoscreen.tiling.cache import open_cache, tile_slide

MPP = 0.25


def _cell_tiles(n: int, tile: int, seed: int = 0) -> list[np.ndarray]:
    """A few glass tiles with stained, textured cells; the slide is tiled from them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:tile, 0:tile]
    tiles = []
    for _ in range(n):
        od = np.zeros((tile, tile), np.float32)
        for _ in range(6):
            cx, cy, r = rng.uniform(0, tile), rng.uniform(0, tile), rng.uniform(15, 45)
            d2 = (xx - cx) ** 2 + (yy - cy) ** 2
            od += 0.25 * np.exp(-d2 / (2 * r * r)) + 0.6 * np.exp(-d2 / (2 * (r / 4) ** 2))
        od += rng.normal(0, 0.015, od.shape).astype(np.float32)  # scanner noise and texture
        stain = np.array([0.6, 0.9, 0.4], np.float32)
        rgb = 238.0 * np.power(10.0, -od[..., None] * stain)
        tiles.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return tiles


def make_slide(path: Path, size: int) -> None:
    tiles = _cell_tiles(16, 256)

    def render(level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        t = tiles[((x // 256) * 7 + (y // 256) * 3 + level) % len(tiles)]
        return t[:h, :w]

    write_pyramidal_tiff(path, size, size, render, mpp=MPP, tile=256)


def bench_tiler(path: Path, cache: Path, workers: int, backend: str) -> tuple[float, int, int]:
    cfg = load_config(overrides={"cache.workers": workers, "reader.backend": backend})
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    store = tile_slide(path, cfg, cache)
    elapsed = time.perf_counter() - t0
    n = len(open_cache(store))
    return elapsed, n, cfg.tiling.patch_size


def bench_raw_decode(path: Path, level: int, workers: int) -> tuple[float, int, int]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[level]
        assert isinstance(page, tifffile.TiffPage)
        fh = tif.filehandle
        segments = list(fh.read_segments(page.dataoffsets, page.databytecounts, sort=True))
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
    slide = work / f"bench-{args.size}.tif"
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
    t_tile, n, p = bench_tiler(slide, work / "cache", args.workers, args.backend)
    t_raw, n_tiles, raw_px = bench_raw_decode(slide, level, args.workers)
    t_naive, n_naive = bench_naive(slide, level, p, args.naive_seconds)

    tiler_mpix = n * p * p / 1e6 / t_tile
    raw_mpix = raw_px / 1e6 / t_raw
    print(
        f"\nslide {args.size} x {args.size} px at {MPP} um/px; level read {level}; "
        f"{args.workers} workers; tiler backend {args.backend}; "
        f"load average before {load:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'method':<30}{'units':>10}{'seconds':>10}{'units/s':>12}{'MPix/s':>10}")
    rows = [
        ("tiler (patches)", n, t_tile, tiler_mpix),
        ("raw JPEG decode (256-px tiles)", n_tiles, t_raw, raw_mpix),
        ("naive read_region (patches)", n_naive, t_naive, n_naive * p * p / 1e6 / t_naive),
    ]
    for name, units, secs, mpix in rows:
        print(f"{name:<30}{units:>10}{secs:>10.2f}{units / secs:>12.1f}{mpix:>10.1f}")
    print(f"ratio tiler / raw decode (MPix/s): {tiler_mpix / raw_mpix:.2f} (goal >= 0.6)")


if __name__ == "__main__":
    main()
