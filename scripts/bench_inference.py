"""Inference speed: score_cache beside a bare timm loop, and fp32 vs bf16+channels_last per
candidate architecture, printed next to each candidate's validation AUC from the equal-budget
comparison (cytoscreen/models/comparison.json, written by scripts/compare_models.py): the
default model is chosen from that table. CPU figures depend on what else runs on the machine.

    .venv/bin/python scripts/bench_inference.py --patches 256 --batch 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cytoscreen.scoring.checkpoint import load_checkpoint, save_checkpoint
from cytoscreen.scoring.infer import Scorer, score_cache
from cytoscreen.scoring.model import create_model, new_card
from cytoscreen.scoring.openvino_import import installed as openvino_installed
from cytoscreen.scoring.runtime import Normaliser, autocast, prepare_model, resolve_device
from cytoscreen.tiling.store import FORMAT, PatchStore, StoreAttrs
from cytoscreen.training.evaluate import throughput

ARCHS = ("resnet18", "mobilenetv3_large_100", "efficientnet_lite0", "efficientnet_b0")
COMPARISON = Path(__file__).resolve().parents[1] / "cytoscreen/models/comparison.json"


def val_auc_by_arch() -> dict[str, str]:
    """Best val AUC (fp32 and bf16+CL) per architecture from the comparison runs."""
    if not COMPARISON.exists():
        return {}
    out: dict[str, tuple[float, str]] = {}
    for name, r in json.loads(COMPARISON.read_text()).items():
        a, b = r["auc_fp32"][0], r["auc_bf16_cl"][0]
        cells = r.get("auc_cells_fp32")
        extra = f", cells-only {cells[0]:.3f}" if isinstance(cells, list) else ""
        if r["arch"] not in out or a > out[r["arch"]][0]:
            out[r["arch"]] = (a, f"{a:.3f} / {b:.3f}{extra} ({name})")
    return {k: v[1] for k, v in out.items()}


def make_store(path: Path, n: int, px: int = 224, chunk: int = 64) -> Path:
    rng = np.random.default_rng(0)
    attrs = StoreAttrs(
        format=FORMAT,
        slide_key="bench",
        slide_name="bench",
        backend=None,
        mpp=0.5,
        mpp_source="bench",
        target_mpp=0.5,
        patch_size=px,
        size_l0=float(px),
        stride_l0=float(px),
        n_patches=n,
        block_starts=(0,),
        config_hash="bench",
    )
    coords = np.zeros((n, 2), dtype=np.int64)
    store = PatchStore.create(path, attrs, coords, np.ones(n, np.float32), chunk_patches=chunk)
    store.write_patches(0, rng.integers(150, 256, size=(n, px, px, 3), dtype=np.uint8))
    store.mark_complete(attrs.config_hash, n)
    return path


def bare_loop(
    arch: str, n: int, batch: int, precision: str, channels_last: bool, device: torch.device
) -> float:
    """patches/s of the model alone on in-memory tensors (uint8 -> normalised, as in infer)."""
    model = prepare_model(create_model(arch, 2), device, channels_last)
    card = new_card(model, arch, ["n", "a"], ["a"])
    norm = Normaliser(card.preprocessing, device, channels_last)
    pix = torch.randint(150, 256, (batch, 224, 224, 3), dtype=torch.uint8)
    with torch.inference_mode(), autocast(device, precision):  # type: ignore[arg-type]
        model(norm(pix[:2]))  # warm-up
        t = time.perf_counter()
        for _ in range(max(1, n // batch)):
            model(norm(pix)).float().softmax(1)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return max(1, n // batch) * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--archs", nargs="*", default=list(ARCHS))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    low = "bf16" if dev.type == "cpu" else "fp16"
    print(
        f"device {dev}, torch threads {torch.get_num_threads()}, {args.patches} patches, "
        f"batch {args.batch}"
    )
    aucs = val_auc_by_arch()
    print(
        f"{'arch':24s} {'fp32':>9s} {low + '+CL':>9s}  (patches/s, bare loop)  "
        "val AUC fp32 / bf16+CL (equal-budget run)"
    )
    for arch in args.archs:
        fp32 = bare_loop(arch, args.patches, args.batch, "fp32", False, dev)
        fast = bare_loop(arch, args.patches, args.batch, low, True, dev)
        print(f"{arch:24s} {fp32:9.1f} {fast:9.1f}  {aucs.get(arch, 'not trained')}")
    arch = "efficientnet_lite0"
    with tempfile.TemporaryDirectory() as tmp:
        model = create_model(arch, 2).eval()
        model_dir = Path(tmp) / "model"
        save_checkpoint(model, new_card(model, arch, ["n", "a"], ["a"]), model_dir)
        for precision, cl in (("fp32", False), (low, True)):
            store = make_store(Path(tmp) / f"s-{precision}.zarr", args.patches)
            run = score_cache(store, model_dir, args.batch, str(dev), precision, channels_last=cl)
            bare = bare_loop(arch, args.patches, args.batch, precision, cl, dev)
            print(
                f"score_cache {arch} {precision:4s} CL={cl!s:5s}: {run.patches_per_s:7.1f} "
                f"patches/s vs bare {bare:7.1f} ({run.patches_per_s / bare:.0%})"
            )
        if dev.type == "cpu" and openvino_installed():
            # the runtime `screen` uses on a CPU when OpenVINO is installed: score_cache beside
            # the same engine's predict on patches already in memory
            scorer = Scorer.build(
                model, load_checkpoint(model_dir)[1], "cpu", "fp32", runtime="openvino"
            )
            bare = throughput(scorer, n=args.patches, batch=args.batch)
            store = make_store(Path(tmp) / "s-openvino.zarr", args.patches)
            run = score_cache(store, scorer, args.batch)
            print(
                f"score_cache {arch} openvino fp32     : {run.patches_per_s:7.1f} "
                f"patches/s vs bare {bare:7.1f} ({run.patches_per_s / bare:.0%})"
            )


if __name__ == "__main__":
    main()
