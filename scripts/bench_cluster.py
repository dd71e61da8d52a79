"""Cluster throughput: slides/hour of ``cytoscreen screen --scheduler`` with 1 and 2 workers.

One command (from the repository root)::

    .venv/bin/python scripts/bench_cluster.py --slides 16 --size 8192

It generates (or reuses) ``--slides`` synthetic slides of ``--size`` px a side in
``<workdir>/slides`` (cytoscreen.synth, real CRIC cells; every fourth one positive), then for
each ``--workers`` value N screens them all on a LocalCluster of N worker processes on this
machine (``--scheduler local:N``), each time into a fresh results folder and patch cache, so
every slide is tiled, scored and decided again. Each worker gets ``--threads`` threads for
tiling and scoring (default: this machine's cores divided by N, so the runs use the same CPUs).

Printed per N: the wall time of the whole run (starting the cluster, loading the model on each
worker, the slides), the batch time (first slide handed out to last slide back: what a long
batch converges to), slides/hour over the batch time, and the ratio to the first N's rate.
Measure on a quiet machine: anything else running takes cores from the workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from cytoscreen.batch import SlideInput
from cytoscreen.config import load_config
from cytoscreen.pipeline import screen
from cytoscreen.slide_result import SlideResult

DEFAULT_WORK = Path("/tmp/cytoscreen-bench-cluster")


class _Clock:
    """Observer of the run: when the batch started and when its last slide came back."""

    def __init__(self) -> None:
        self.started = self.last = 0.0
        self.failed: list[str] = []

    def run_started(self, slides: Sequence[SlideInput]) -> None:
        self.started = self.last = time.perf_counter()

    def stage(self, slide: SlideInput, stage: str, done: int, total: int | None) -> None:
        pass

    def slide_finished(self, slide: SlideInput, result: SlideResult, skipped: bool) -> None:
        self.last = time.perf_counter()
        if result.failed:
            self.failed.append(f"{slide.relative}: {result.error}")


def make_slides(folder: Path, n: int, size: int) -> Path:
    """``n`` synthetic slides of ``size`` px in ``folder`` (kept between runs)."""
    from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide

    folder.mkdir(parents=True, exist_ok=True)
    kit = bundled_kit()
    for i in range(n):
        path = folder / f"bench-{size}-{i:03d}.tiff"
        if path.exists():
            continue
        positive = i % 4 == 3
        spec = SlideSpec(
            size=size,
            label="positive" if positive else "negative",
            seed=1000 + i,
            n_abnormal=4 if positive else 0,
        )
        generate_slide(path, spec, kit)
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slides", type=int, default=8, help="slides in the batch")
    ap.add_argument("--size", type=int, default=4096, help="slide side in px (0.25 um/px)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="cluster sizes")
    ap.add_argument("--threads", type=int, default=None, help="threads per worker")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: bundled)")
    ap.add_argument("--config", type=Path, default=None, help="screen config (YAML)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORK)
    args = ap.parse_args(argv)

    slides = make_slides(args.workdir / "slides", args.slides, args.size)
    cores = os.cpu_count() or 1
    rows = []
    for n in args.workers:
        threads = args.threads or max(1, cores // n)
        address = f"local:{n}"
        cfg = load_config(
            args.config,
            {
                "cache.scheduler_address": address,
                "scoring.threads": threads,
                "cache.workers": threads,
            },
        )
        out = args.workdir / f"results-{n}"
        shutil.rmtree(out, ignore_errors=True)  # a fresh cache and results: nothing skipped
        clock = _Clock()
        t0 = time.perf_counter()
        report = screen([slides], out, cfg, model_dir=args.model, observer=clock)
        wall = time.perf_counter() - t0
        batch = clock.last - clock.started
        rate = len(report.results) / batch * 3600.0 if batch > 0 else float("nan")
        rows.append((n, address, threads, len(report.results), wall, batch, rate))
        for line in clock.failed:
            print(f"  failed: {line}")
    print(f"{args.slides} slides of {args.size} px, {cores} cores")
    print(f"{'workers':>7}  {'address':<22} {'threads':>7}  {'wall s':>8}  {'batch s':>8}  "
          f"{'slides/h':>9}  {'ratio':>6}")  # fmt: skip
    base = rows[0][6]
    for n, address, threads, _, wall, batch, rate in rows:
        print(f"{n:>7}  {address:<22} {threads:>7}  {wall:>8.1f}  {batch:>8.1f}  "
              f"{rate:>9.1f}  {rate / base:>6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
