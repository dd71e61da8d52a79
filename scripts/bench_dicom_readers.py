"""Compare the two maintained DICOM WSI readers on the same series: OpenSlide (>= 4) and wsidicom.

Writes a cytology-like scene (pale background, stained Gaussian nuclei, sensor noise) of
--size x --size*3/4 px at 0.25 um/px with a 2x pyramid, stores it as a DICOM VL Whole Slide
Microscopy series once per pixel encoding (uncompressed, JPEG 2000 lossless, baseline JPEG
q90; cytoscreen.synth.dicomwriter), then for each reader and encoding:

  open      median seconds to open the series (folder for wsidicom, one file for OpenSlide)
  random    median wall seconds (and process CPU seconds) of --regions reads of 256 x 256 px
            at random, tile-unaligned places, half on level 0 and half on level 1 (as a viewer
            or patch sampler reads), each run on a freshly opened slide
  sweep     median MPix/s reading all of level 0 in 1024 x 1024 px blocks on a freshly opened
            slide (as the tiler reads: every tile decoded once, caches cold)
  max diff  largest absolute difference of any channel of any read pixel (both workloads)
            against the scene written (0 = exact); and between the two readers

All reads are single-threaded (wsidicom threads=1). Both readers are called through their own
APIs (OpenSlide: level-0 coordinates, RGBA; wsidicom: coordinates of the level read,
as_array). Prints a Markdown table.

    python scripts/bench_dicom_readers.py --size 4096 --regions 400 --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import openslide

from cytoscreen.synth.dicomwriter import Compression, write_dicom_wsi

Regions = list[tuple[int, int, int, int, int]]  # (level, x, y, w, h) in that level's pixels
REGION = 256
BLOCK = 1024


def scene(width: int, height: int, seed: int = 7) -> npt.NDArray[np.uint8]:
    """Pale background with stained nuclei (Gaussian blobs) and a little noise, RGB uint8."""
    rng = np.random.default_rng(seed)
    od = np.zeros((height, width), np.float32)
    for _ in range(width * height // 20000):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        sigma = rng.uniform(6, 24)
        r = int(3 * sigma)
        x0, x1 = max(0, int(cx) - r), min(width, int(cx) + r)
        y0, y1 = max(0, int(cy) - r), min(height, int(cy) + r)
        if x1 <= x0 or y1 <= y0:
            continue
        xs = np.arange(x0, x1, dtype=np.float32) - cx
        ys = np.arange(y0, y1, dtype=np.float32) - cy
        blob = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
        od[y0:y1, x0:x1] += rng.uniform(0.3, 1.2) * blob
    stain = np.array([0.55, 1.0, 0.35], np.float32)
    rgb = np.array([236, 231, 240], np.float32) * np.exp(-od[..., None] * stain)
    rgb += rng.normal(0, 2.0, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 255).round().astype(np.uint8)


def pyramid(image: npt.NDArray[np.uint8], min_size: int = 512) -> list[npt.NDArray[np.uint8]]:
    levels = [image]
    while max(levels[-1].shape[:2]) > min_size:
        prev = levels[-1]
        h, w = prev.shape[0] // 2 * 2, prev.shape[1] // 2 * 2
        blocks = prev[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).astype(np.float32)
        levels.append(blocks.mean(axis=(1, 3)).round().astype(np.uint8))
    return levels


def random_regions(levels: list[npt.NDArray[np.uint8]], n: int, seed: int = 11) -> Regions:
    rng = np.random.default_rng(seed)
    out: Regions = []
    for i in range(n):
        level = i % 2
        h, w = levels[level].shape[:2]
        x, y = int(rng.integers(0, w - REGION)), int(rng.integers(0, h - REGION))
        out.append((level, x, y, REGION, REGION))
    return out


def sweep_regions(level0: npt.NDArray[np.uint8]) -> Regions:
    h, w = level0.shape[:2]
    return [
        (0, x, y, min(BLOCK, w - x), min(BLOCK, h - y))
        for y in range(0, h, BLOCK)
        for x in range(0, w, BLOCK)
    ]


Reads = Callable[[Regions], list[npt.NDArray[np.uint8]]]


def read_openslide(folder: Path) -> Reads:
    def run(regions: Regions) -> list[npt.NDArray[np.uint8]]:
        first = sorted(folder.glob("*.dcm"))[0]
        with openslide.OpenSlide(str(first)) as slide:
            ds = slide.level_downsamples
            return [
                np.asarray(slide.read_region((round(x * ds[lv]), round(y * ds[lv])), lv, (w, h)))[
                    ..., :3
                ]
                for lv, x, y, w, h in regions
            ]

    return run


def read_wsidicom(folder: Path) -> Reads:
    from wsidicom import WsiDicom

    def run(regions: Regions) -> list[npt.NDArray[np.uint8]]:
        with WsiDicom.open(folder) as slide:
            return [
                np.asarray(slide.read_region((x, y), lv, (w, h), threads=1, as_array=True))[..., :3]
                for lv, x, y, w, h in regions
            ]

    return run


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``repeats`` calls, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def open_time(reader: str, folder: Path, repeats: int) -> float:
    def once() -> None:
        if reader == "openslide":
            openslide.OpenSlide(str(sorted(folder.glob("*.dcm"))[0])).close()
        else:
            from wsidicom import WsiDicom

            WsiDicom.open(folder).close()

    return timed(once, repeats)[0]


def truth_of(levels: list[npt.NDArray[np.uint8]], regions: Regions) -> list[npt.NDArray[np.uint8]]:
    return [levels[lv][y : y + h, x : x + w] for lv, x, y, w, h in regions]


def max_diff(a: list[npt.NDArray[np.uint8]], b: list[npt.NDArray[np.uint8]]) -> int:
    return max(int(np.abs(p.astype(np.int16) - q).max()) for p, q in zip(a, b, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="level-0 width in px")
    ap.add_argument("--regions", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    width, height = args.size, args.size * 3 // 4
    levels = pyramid(scene(width, height))
    randoms, sweep = random_regions(levels, args.regions), sweep_regions(levels[0])
    truth = truth_of(levels, randoms) + truth_of(levels, sweep)
    encodings: list[tuple[Compression, str]] = [
        ("none", "uncompressed"),
        ("jpeg2k", "JPEG 2000 lossless"),
        ("jpeg", "JPEG q90"),
    ]
    readers: dict[str, Callable[[Path], Reads]] = {
        "openslide": read_openslide,
        "wsidicom": read_wsidicom,
    }
    print(
        f"scene {width} x {height} px, {len(levels)} levels, 256 px tiles; random: "
        f"{len(randoms)} regions of {REGION} px (levels 0 and 1); sweep: level 0 in "
        f"{len(sweep)} blocks of {BLOCK} px; median of {args.repeats} runs, one thread; "
        f"OpenSlide {openslide.__library_version__} (openslide-python "
        f"{_version('openslide-python')}), wsidicom {_version('wsidicom')}\n"
    )
    print(
        "| encoding | reader | open (ms) | random: ms / region (CPU) | sweep: MPix/s (CPU) "
        "| max diff vs scene | max diff between readers |"
    )
    print("|---|---|---|---|---|---|---|")
    mpix = width * height / 1e6
    with tempfile.TemporaryDirectory(prefix="bench-dicom-") as tmp:
        for compression, label in encodings:
            folder = Path(tmp) / compression
            write_dicom_wsi(folder, levels, mpp=0.25, compression=compression, quality=90)
            pixels: dict[str, list[npt.NDArray[np.uint8]]] = {}
            rows = []
            for name, make in readers.items():
                run = make(folder)
                run(randoms[:20])  # warm-up: imports, page cache
                opened = open_time(name, folder, args.repeats)
                r_wall, r_cpu, r_px = timed(functools.partial(run, randoms), args.repeats)
                s_wall, s_cpu, s_px = timed(functools.partial(run, sweep), args.repeats)
                pixels[name] = list(r_px) + list(s_px)  # type: ignore[call-overload]
                n = len(randoms)
                rows.append(
                    (
                        name,
                        f"{1000 * opened:.1f}",
                        f"{1000 * r_wall / n:.2f} ({1000 * r_cpu / n:.2f})",
                        f"{mpix / s_wall:.0f} ({mpix / s_cpu:.0f})",
                        str(max_diff(pixels[name], truth)),
                    )
                )
            between = max_diff(pixels["openslide"], pixels["wsidicom"])
            for row in rows:
                print(f"| {label} | " + " | ".join(row) + f" | {between} |")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
