"""Fit the domain reference (domain.json) from generated Pap slides of CRIC train and val cells.

    nice -n 10 .venv/bin/python scripts/make_domain_reference.py \
        --out cytoscreen/models/default/domain.json

Generates ``--slides`` small slides with ``cytoscreen.synth`` from the fields the model was
trained on and those its threshold was calibrated on (data_manifests/cric_splits.json,
``train`` and ``val``: ``--splits``; the bundled kit when the full cell set is absent),
alternating negative and positive, liquid-based and conventional, with the stain, colour, focus
and density ranges of the calibration slides (``synth.patches.Conditions``), tiles
them with the screen configuration, profiles a sample of each slide's cached patches
(``cytoscreen.slide.domain``) and writes the per-statistic median and spread, with a record of
the data it came from, to ``--out``. Prints each slide's profile and shift against the result.
About a minute on two cores. ``--from-slides DIR`` fits the reference to existing slides
instead (a laboratory's own in-domain scans: the generated slides' glass and stain are narrower
than a real scanner's). ``scripts/measure_domain_shift.py`` measures the margins that set
``triage.max_domain_shift``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import cytoscreen
from cytoscreen.batch import find_slides
from cytoscreen.config import Config, load_config
from cytoscreen.fsutil import write_json_atomic
from cytoscreen.pipeline import profile_cache
from cytoscreen.slide.domain import FEATURE_NAMES, DomainProfile, compare, fit_reference
from cytoscreen.synth import generate_slide, load_cell_kit
from cytoscreen.synth.cric import load_image_splits
from cytoscreen.synth.kit import find_full_set
from cytoscreen.synth.patches import Conditions, draw_spec
from cytoscreen.tiling import open_cache, tile_slide

REPO = Path(__file__).resolve().parents[1]
# the calibration slides' stain, colour, focus and blood, over a wider span of densities: a
# dense conventional smear (overlapping cells, dark clusters) is in the domain too
REFERENCE_CONDITIONS = Conditions(
    density={"liquid": (300.0, 1500.0), "conventional": (1000.0, 3500.0)}
)


def _fit_kit(splits: Sequence[str]) -> tuple[Any, str]:
    """The fields of ``splits`` (the model's training fields and the validation fields its
    threshold was calibrated on), and a description of them that names no local path."""
    kit = load_cell_kit()
    full = find_full_set() is not None
    name = "CRIC Cervix fields (" + ("the full development set" if full else "the bundled kit")
    try:
        images = load_image_splits(REPO / "data_manifests/cric_splits.json").images
        ids = sorted({i for s in splits for i in images[s]})
    except Exception as exc:  # noqa: BLE001 - fall back to every field, and say so
        return kit, f"{name}, all fields: no {'+'.join(splits)} split available: {exc})"
    label = "+".join(splits)
    return kit.subset(ids, source=f"{kit.source} [{label}]"), (
        f"{name}, {label} splits of data_manifests/cric_splits.json)"
    )


def _generated(args: argparse.Namespace, work: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    kit, _ = _fit_kit(args.splits)
    (work / "slides").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for i in range(args.slides):
        label = "positive" if i % 2 else "negative"
        prep = ("liquid", "conventional")[(i // 2) % 2]
        spec = draw_spec(
            rng, label=label, n_cells=args.cells, n_abnormal=5, prep=prep,
            seed=args.seed * 10_007 + i, conditions=REFERENCE_CONDITIONS,
        )  # fmt: skip
        path = work / "slides" / f"domain_{args.seed:04d}_{i:03d}.tiff"
        if not path.is_file():
            generate_slide(path, spec, kit)
        yield (
            path,
            {
                "name": path.name,
                "label": label,
                "seed": spec.seed,
                "size": spec.size,
                "mpp": spec.mpp,
                "prep": spec.prep,
                "density": round(spec.density, 1),
                "stain": round(spec.stain, 3),
                "focus_um": round(spec.focus_um, 3),
            },
        )


def _source(args: argparse.Namespace, cfg: Config, slides: list[dict[str, Any]]) -> dict[str, Any]:
    common = {
        "slides": slides,
        "tiling": {"target_mpp": cfg.tiling.target_mpp, "patch_size": cfg.tiling.patch_size},
        "sample": "per slide up to 64 of the most cell-bearing valid patches from up to 8 cache "
        "chunks spread over the slide (cytoscreen.slide.domain.sample_indices)",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "cytoscreen": cytoscreen.__version__,
    }
    if args.from_slides:
        return {
            "description": "slides given as in-domain by whoever ran the script; statistics of "
            "a sample of each slide's cached patches",
            "script": "scripts/make_domain_reference.py --from-slides "
            + " ".join(str(p) for p in args.from_slides),
            **common,
        }
    kit, kit_source = _fit_kit(args.splits)
    return {
        "description": (
            "generated Pap slides (cytoscreen.synth) of real CRIC Cervix cells, the cells the "
            "model was trained on and those its threshold was calibrated on; statistics of a "
            "sample of each slide's cached patches"
        ),
        "generator": "cytoscreen.synth.generate_slide",
        "cells": kit_source,
        "n_cells": len(kit),
        "script": "scripts/make_domain_reference.py "
        f"--slides {args.slides} --cells {args.cells} --seed {args.seed} "
        f"--splits {' '.join(args.splits)}",
        **common,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="domain.json to write")
    ap.add_argument("--config", type=Path, default=None, help="screen config (tiling)")
    ap.add_argument("--slides", type=int, default=24, help="generated slides")
    ap.add_argument("--cells", type=int, default=1500, help="labelled cells per slide")
    ap.add_argument("--seed", type=int, default=8300)
    ap.add_argument(
        "--splits",
        nargs="+",
        choices=("train", "val"),
        default=["train", "val"],
        help="fields to draw (default: those the model trained on and those the threshold "
        "was calibrated on: a threshold holds on slides like its calibration slides)",
    )
    ap.add_argument(
        "--from-slides",
        type=Path,
        nargs="+",
        default=None,
        help="fit to these slides or folders (a lab's own in-domain scans) instead",
    )
    ap.add_argument("--work", type=Path, default=None, help="keep slides and caches here")
    args = ap.parse_args()

    cfg = load_config(args.config)
    work = args.work or Path(tempfile.mkdtemp(prefix="domain-ref-"))
    inputs: Iterator[tuple[Path, dict[str, Any]]] = (
        ((s.path, {"name": s.relative}) for s in find_slides(args.from_slides))
        if args.from_slides
        else _generated(args, work)
    )
    profiles: list[DomainProfile] = []
    slides: list[dict[str, Any]] = []
    try:
        for path, row in inputs:
            t0 = time.perf_counter()
            profile = profile_cache(open_cache(tile_slide(path, cfg, work / "cache")))
            if profile is None:
                print(f"{path.name}: no foreground patch, left out", flush=True)
                continue
            profiles.append(profile)
            slides.append(
                {
                    **row,
                    "n_patches_profiled": profile.n_patches,
                    "n_stained_pixels": profile.n_stained,
                }
            )
            values = " ".join(f"{k}={v:.3f}" for k, v in profile.values.items())
            print(f"{path.name} ({time.perf_counter() - t0:.1f} s): {values}", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    reference = fit_reference(profiles, _source(args, cfg, slides))
    write_json_atomic(args.out, reference.to_dict())
    print(f"\nwrote {args.out} from {len(profiles)} slides")
    print(f"{'statistic':26s} {'centre':>9s} {'spread':>8s} {'min':>9s} {'max':>9s}")
    for name in FEATURE_NAMES:
        f = reference.features[name]
        print(f"{name:26s} {f.centre:9.4f} {f.spread:8.4f} {f.minimum:9.4f} {f.maximum:9.4f}")
    print("\nshift of the reference slides themselves (in-sample):")
    for row, p in zip(slides, profiles, strict=True):
        c = compare(p, reference)
        print(f"  {row['name']:28s} shift {c.shift:5.2f}  {c.note}")


if __name__ == "__main__":
    main()
