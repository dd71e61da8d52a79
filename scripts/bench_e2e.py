"""End-to-end speed: ``cytoscreen screen`` against TIAToolbox's PatchPredictor, same slide.

One command (from the repository root)::

    .venv/bin/python scripts/bench_e2e.py --sizes 10000 20000 --compare 10000

For each --sizes value it generates (or reuses) a synthetic liquid-based slide
``<workdir>/synth-<size>.tiff`` (cytoscreen.synth, real CRIC cells, default density, 0.25 um/px;
the same slides scripts/bench_tiling.py writes) and runs ``cytoscreen screen`` on it in a
subprocess, with a fresh cache and results folder, recording wall time, the per-stage timings
the pipeline writes into result.json and the peak memory of the whole process tree (the sum of
the RSS of the screen process and its children, sampled every 50 ms).

For each --compare size it then runs, in the same invocation and on the same slide,
TIAToolbox's PatchPredictor in its own virtual environment (created with
``python3 -m venv <tia-venv> && <tia-venv>/bin/pip install tiatoolbox`` when absent; TIAToolbox
is never imported into cytoscreen's environment). This file is also the worker there
(``--tia-worker``): it imports only TIAToolbox, torch and timm. TIAToolbox gets:

  * a timm network with 2 classes (random weights: speed only), given to PatchPredictor as a
    custom model object: ``resnet18`` (TIAToolbox's usual patch classifier, the speed issue's
    reference) and ``efficientnet_lite0`` (the bundled model's network), one run each
    (``--tia-arch``);
  * the same patch geometry: 224 px at the bundled model's resolution (its card's mpp,
    0.25 um/px since issue 13), stride 224;
  * the same patches: a mask drawn from the coordinates cytoscreen tiled (so both score the same
    cell-bearing area; TIAToolbox's own Otsu mask is not used);
  * the same threads (torch.set_num_threads = cores) and batch size (cytoscreen's config).

Stages reported for TIAToolbox: "reading" = iterating the DataLoader PatchPredictor builds
for the slide (its reader + extractor) with no model; "inference" = the model alone on the same
number of patches (random tensors, same batch size); "total" = PatchPredictor.run end to end
(reading, inference, merging, Zarr output) in a second process of its own, whose wall time and
peak memory are reported. For cytoscreen: "reading/tiling" and "inference" are
the pipeline's own stage timings (result.json), "total" is the subprocess wall time (process
start, imports, tiling, scoring, decision, images).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MPP = 0.25
PATCH = 224
TIA_ARCHS = ("resnet18", "efficientnet_lite0")
DEFAULT_WORK = Path("/tmp/cytoscreen-bench")
DEFAULT_TIA_VENV = Path("/tmp/tiatoolbox-venv")


# ---------------------------------------------------------------- measuring a subprocess


@dataclass(frozen=True)
class Measured:
    wall_s: float
    peak_rss_mb: float  # sum of RSS over the process tree, sampled
    returncode: int
    stdout: str


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd``; wall time and the peak summed RSS of its process tree (50 ms samples)."""
    import psutil

    peak = 0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            peak = max(peak, total)
            done.wait(0.05)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    watcher.join()
    return Measured(wall, peak / 2**20, proc.returncode, out.decode(errors="replace"))


# ---------------------------------------------------------------- slides and cytoscreen


def ensure_slide(work: Path, size: int) -> Path:
    """``<work>/synth-<size>.tiff``, generated (as scripts/bench_tiling.py does) when absent."""
    from cytoscreen.synth import SlideSpec, generate_slide, load_cell_kit

    path = work / f"synth-{size}.tiff"
    if not path.exists():
        t0 = time.perf_counter()
        spec = SlideSpec(size=size, label="positive", seed=size % 9973)
        generate_slide(path, spec, load_cell_kit())
        print(f"wrote {path} in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


@dataclass(frozen=True)
class ScreenRun:
    size: int
    n_patches: int
    n_cells: int  # cells the generator placed (truth file)
    tiling_s: float
    scoring_s: float
    pipeline_s: float  # result.json total (one slide, inside the process)
    wall_s: float  # the whole `cytoscreen screen` process
    peak_rss_mb: float
    store: Path


def run_screen(slide: Path, size: int, work: Path, precision: str | None = None) -> ScreenRun:
    # driver side only: the same file runs as the TIAToolbox worker, where cytoscreen is absent
    from cytoscreen.slide_result import load_results
    from cytoscreen.synth.slide import load_truth, truth_paths

    out, cache = work / f"e2e-out-{size}", work / f"e2e-cache-{size}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    exe = Path(sys.executable).with_name("cytoscreen")
    cmd = [str(exe), "screen", str(slide), "--out", str(out), "--cache", str(cache)]
    if precision:  # `screen` takes it from a config file
        config = work / f"e2e-{precision}.yaml"
        config.write_text(
            f"scoring:\n  runtime: openvino\n  precision: {precision}\n", encoding="utf-8"
        )
        cmd += ["--config", str(config)]
    m = run_measured(cmd)
    if m.returncode != 0:
        raise SystemExit(f"cytoscreen screen failed on {slide}:\n{m.stdout[-3000:]}")
    (record,) = load_results(out)
    result = record.to_json()
    if record.failed:
        raise SystemExit(f"cytoscreen screen did not finish {slide}: {record.error}")
    t = result["timings"]
    return ScreenRun(
        size=size,
        n_patches=int(result["counts"]["n_patches"]),
        n_cells=len(load_truth(truth_paths(slide)[0]).cells),
        tiling_s=float(t["tiling"]),
        scoring_s=float(t["scoring"]),
        pipeline_s=float(t["total"]),
        wall_s=m.wall_s,
        peak_rss_mb=m.peak_rss_mb,
        store=Path(result["cache"]),
    )


def median_run(slide: Path, size: int, work: Path, precision: str, runs: int) -> ScreenRun:
    """``runs`` screens of ``slide`` (each with a fresh cache); the one of median wall time.
    ``precision`` 'auto' runs the shipped config as it is."""
    done = [
        run_screen(slide, size, work, None if precision == "auto" else precision)
        for _ in range(max(1, runs))
    ]
    return sorted(done, key=lambda r: r.wall_s)[len(done) // 2]


def write_patch_mask(store: Path, slide: Path, mask_path: Path, mask_mpp: float = 8.0) -> int:
    """A PNG mask (``mask_mpp`` um/px) covering exactly the patches cytoscreen tiled.

    Returns the number of patches. Each patch is drawn shrunk by one mask pixel on every side
    so that TIAToolbox's any-overlap patch filter does not pick up the neighbouring patches.
    """
    import numpy as np
    from PIL import Image

    from cytoscreen.io import open_slide
    from cytoscreen.tiling import open_cache

    cache = open_cache(store)
    with open_slide(slide) as reader:
        w, h = reader.meta.dimensions
        scale = reader.meta.mpp / mask_mpp
    mask = np.zeros((int(np.ceil(h * scale)), int(np.ceil(w * scale))), dtype=np.uint8)
    side = cache.attrs.size_l0 * scale
    for x, y in np.asarray(cache.coords, dtype=float) * scale:
        x0, y0 = int(np.floor(x)) + 1, int(np.floor(y)) + 1
        x1, y1 = int(np.ceil(x + side)) - 1, int(np.ceil(y + side)) - 1
        mask[y0:y1, x0:x1] = 255
    Image.fromarray(mask).save(mask_path)
    return len(cache.coords)


# ---------------------------------------------------------------- TIAToolbox (driver side)


def ensure_tia_venv(venv: Path) -> Path:
    """The TIAToolbox interpreter, installing ``tiatoolbox`` into ``venv`` when absent."""
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import tiatoolbox, timm"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    print(f"installing TIAToolbox into {venv} (several minutes, a few GB) ...", flush=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "tiatoolbox"], check=True)
    return py


def run_tia(
    py: Path,
    slide: Path,
    mask: Path,
    work: Path,
    *,
    arch: str,
    target_mpp: float,
    batch: int,
    threads: int,
    loader_workers: int,
) -> dict[str, Any]:
    """Two TIAToolbox processes: ``stages`` (reading alone, model alone), then ``run``
    (PatchPredictor.run alone, so its wall time and peak memory are its own)."""
    res: dict[str, Any] = {}
    for phase in ("stages", "run"):
        out = work / "tia-out"
        shutil.rmtree(out, ignore_errors=True)
        result_json = work / f"tia-{phase}.json"
        result_json.unlink(missing_ok=True)
        job = {
            "phase": phase,
            "slide": str(slide),
            "mask": str(mask),
            "out": str(out),
            "result": str(result_json),
            "batch": batch,
            "threads": threads,
            "loader_workers": loader_workers,
            "mpp": MPP,
            "target_mpp": target_mpp,
            "arch": arch,
        }
        cmd = [str(py), str(Path(__file__).resolve()), "--tia-worker", json.dumps(job)]
        m = run_measured(cmd)
        if m.returncode != 0 or not result_json.exists():
            raise SystemExit(f"TIAToolbox worker ({phase}) failed:\n{m.stdout[-4000:]}")
        res.update(json.loads(result_json.read_text()))
        res[f"{phase}_wall_s"] = m.wall_s
        res[f"{phase}_peak_rss_mb"] = m.peak_rss_mb
    return res


# ---------------------------------------------------------------- TIAToolbox (worker side)


def tia_worker(job: dict[str, Any]) -> None:  # pragma: no cover - runs in the TIAToolbox venv
    """Runs under the TIAToolbox interpreter; imports only TIAToolbox, torch and timm."""
    slide, mask, batch = Path(job["slide"]), Path(job["mask"]), int(job["batch"])
    # TIAToolbox's TIFF reader does not read the resolution tags: give it the slide's mpp
    reader_kwargs = {"mpp": (float(job["mpp"]), float(job["mpp"]))}
    t_import = time.perf_counter()
    import timm
    import torch
    from tiatoolbox.models.engine.io_config import IOPatchPredictorConfig
    from tiatoolbox.models.engine.patch_predictor import PatchPredictor
    from tiatoolbox.models.models_abc import ModelABC

    torch.set_num_threads(int(job["threads"]))
    result: dict[str, Any] = {"import_s": time.perf_counter() - t_import}

    class TimmClassifier(ModelABC):
        """timm network behind TIAToolbox's model interface (softmax outputs)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = timm.create_model(job["arch"], pretrained=False, num_classes=2)
            cfg = timm.data.resolve_model_data_config(self.net)
            self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1) * 255.0)

        def forward(self, imgs: torch.Tensor) -> torch.Tensor:
            x = imgs.permute(0, 3, 1, 2).float()
            return torch.softmax(self.net((x - self.mean) / self.std), dim=1)

        @staticmethod
        def infer_batch(model: torch.nn.Module, batch_data: Any, device: str) -> Any:
            model.eval()
            with torch.inference_mode():
                return model(torch.as_tensor(batch_data).to(device)).cpu().numpy()

    ioconfig = IOPatchPredictorConfig(
        input_resolutions=[{"units": "mpp", "resolution": float(job["target_mpp"])}],
        patch_input_shape=(PATCH, PATCH),
        stride_shape=(PATCH, PATCH),
    )
    model = TimmClassifier().eval()
    predictor = PatchPredictor(
        model=model,
        batch_size=batch,
        num_workers=int(job["loader_workers"]),
        device="cpu",
        verbose=False,
    )
    if job["phase"] == "stages":
        # reading: the DataLoader PatchPredictor builds for a WSI (reader + extractor), no model
        t0 = time.perf_counter()
        loader = predictor.get_dataloader(
            images=slide,
            masks=mask,
            patch_mode=False,
            ioconfig=ioconfig,
            auto_get_mask=False,
            wsireader_kwargs=reader_kwargs,
        )
        n = sum(len(b["image"]) for b in loader)
        result["reading_s"] = time.perf_counter() - t0
        result["n_patches"] = n
        # inference alone: the model on as many patches, same batch size
        t0 = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, n, batch):
                k = min(batch, n - start)
                model(torch.randint(0, 255, (k, PATCH, PATCH, 3), dtype=torch.uint8))
        result["inference_s"] = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        output = predictor.run(
            images=[slide],
            masks=[mask],
            patch_mode=False,
            ioconfig=ioconfig,
            save_dir=Path(job["out"]),
            overwrite=True,
            output_type="zarr",
            auto_get_mask=False,
            wsireader_kwargs=reader_kwargs,
        )
        result["run_s"] = time.perf_counter() - t0
        result["output"] = str(output)
        result["torch"] = torch.__version__
        result["torch_threads"] = torch.get_num_threads()
    Path(job["result"]).write_text(json.dumps(result))


# ---------------------------------------------------------------- report


def rate(n: float, s: float) -> str:
    return f"{n / s:,.1f}" if s > 0 else "-"


def compare_table(run: ScreenRun, tia: dict, arch: str, load: tuple[float, float]) -> str:
    n_c, n_t = run.n_patches, int(tia["n_patches"])
    rows = [
        ("reading / tiling", run.tiling_s, float(tia["reading_s"])),
        ("inference", run.scoring_s, float(tia["inference_s"])),
        ("total (process wall)", run.wall_s, float(tia["run_wall_s"])),
        ("total (slide, in process)", run.pipeline_s, float(tia["run_s"])),
    ]
    lines = [
        f"slide {run.size} x {run.size} px; cytoscreen {n_c} patches, TIAToolbox ({arch}) "
        f"{n_t} patches; "
        f"load average {load[0]:.2f} before, {load[1]:.2f} after",
        "| stage | cytoscreen s | cytoscreen patches/s | TIAToolbox s | TIAToolbox patches/s "
        "| ratio (patches/s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, c_s, t_s in rows:
        ratio = (n_c / c_s) / (n_t / t_s) if c_s > 0 and t_s > 0 and n_t > 0 else float("nan")
        lines.append(
            f"| {name} | {c_s:.2f} | {rate(n_c, c_s)} | {t_s:.2f} | {rate(n_t, t_s)} "
            f"| {ratio:.2f}x |"
        )
    lines.append(
        f"| peak RSS (process tree) | {run.peak_rss_mb:,.0f} MB | | "
        f"{float(tia['run_peak_rss_mb']):,.0f} MB | | |"
    )
    return "\n".join(lines)


def scaling_table(runs: list[tuple[str, ScreenRun, tuple[float, float]]]) -> str:
    lines = [
        "| precision | slide px | cells | patches | tiling s | scoring s | wall s "
        "| patches/s (wall) | s per 1,000 cells | peak RSS MB | load before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for precision, r, (l0, l1) in runs:
        lines.append(
            f"| {precision} | {r.size:,} | {r.n_cells:,} | {r.n_patches:,} | {r.tiling_s:.2f} "
            f"| {r.scoring_s:.2f} | {r.wall_s:.2f} | {rate(r.n_patches, r.wall_s)} "
            f"| {1000 * r.wall_s / max(r.n_cells, 1):.2f} | {r.peak_rss_mb:,.0f} "
            f"| {l0:.2f}/{l1:.2f} |"
        )
    return "\n".join(lines)


WARM_SCORER = (
    "from cytoscreen.config import load_config\n"
    "from cytoscreen.resolve import resolve_model\n"
    "cfg = load_config()\n"
    "print(resolve_model(cfg).scorer(cfg).describe()['runtime_note'])\n"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 40_000])
    ap.add_argument("--compare", type=int, nargs="*", default=[10_000], help="sizes for TIA")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--tia-venv", type=Path, default=DEFAULT_TIA_VENV)
    ap.add_argument(
        "--tia-arch", nargs="+", default=list(TIA_ARCHS), help="networks TIAToolbox runs"
    )
    ap.add_argument(
        "--tia-workers", type=int, default=0, help="TIAToolbox DataLoader workers (its default 0)"
    )
    ap.add_argument(
        "--precision",
        nargs="+",
        default=["auto"],
        help="cytoscreen's scoring precisions, each timed against the same TIAToolbox run: "
        "auto (the shipped config), or fp32 / bf16 / int8 through OpenVINO",
    )
    ap.add_argument(
        "--runs",
        type=int,
        default=1,
        help="cytoscreen runs per precision and size; the run of median wall time is reported",
    )
    args = ap.parse_args()

    from cytoscreen.config import load_config
    from cytoscreen.resolve import resolve_model

    cfg = load_config()
    target_mpp = resolve_model(cfg).card.mpp
    threads = cfg.scoring.threads or os.cpu_count() or 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} CPUs; cmd: {' '.join(sys.argv)}")
    # the OpenVINO graph is converted once per model and OpenVINO version (an install-time
    # cost, cached under ~/.cache/cytoscreen/openvino); make it now, so every timed run below
    # measures what a lab's every run costs
    t = time.perf_counter()
    warm = subprocess.run(
        [sys.executable, "-c", WARM_SCORER], capture_output=True, text=True, check=True
    )
    print(f"scorer ready in {time.perf_counter() - t:.1f} s: {warm.stdout.strip()}", flush=True)
    scaling: list[tuple[str, ScreenRun, tuple[float, float]]] = []
    for size in sorted(set(args.sizes) | set(args.compare)):
        slide = ensure_slide(args.workdir, size)
        runs: dict[str, ScreenRun] = {}
        for precision in args.precision:
            before = os.getloadavg()[0]
            run = median_run(slide, size, args.workdir, precision, args.runs)
            after = os.getloadavg()[0]
            runs[precision] = run
            if size in args.sizes:
                scaling.append((precision, run, (before, after)))
            print(f"cytoscreen {size} ({precision}): {run}", flush=True)
        if size in args.compare:
            py = ensure_tia_venv(args.tia_venv)
            mask = args.workdir / f"e2e-mask-{size}.png"
            write_patch_mask(run.store, slide, mask)
            for arch in args.tia_arch:
                before = os.getloadavg()[0]
                tia = run_tia(
                    py,
                    slide,
                    mask,
                    args.workdir,
                    arch=arch,
                    target_mpp=target_mpp,
                    batch=cfg.scoring.batch_size,
                    threads=threads,
                    loader_workers=args.tia_workers,
                )
                after = os.getloadavg()[0]
                print(f"TIAToolbox {arch} {size}: {tia}", flush=True)
                for precision, run in runs.items():
                    table = compare_table(run, tia, arch, (before, after))
                    print(f"\ncytoscreen {precision}:\n{table}\n", flush=True)
    print(
        "\nscaling (cytoscreen screen, one slide per run, fresh cache; precisions in the "
        f"order {args.precision}):"
    )
    print(scaling_table(scaling))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--tia-worker":
        tia_worker(json.loads(sys.argv[2]))
    else:
        main()
