"""Fit a domain reference (the ``domain.json`` the screen reads beside a model).

``fit_domain_reference`` profiles a sample of each slide's cached patches
(:mod:`cytoscreen.slide.domain`) and writes the per-statistic median and spread, with a record
of the data it came from. The slides are either a laboratory's own in-domain scans
(``from_slides``) or small Pap slides generated with :mod:`cytoscreen.synth` from the CRIC fields
the model was trained on and those its threshold was calibrated on (``splits`` of
``splits_file``; every field of the kit when no split file is given), alternating negative and
positive, liquid-based and conventional, with the stain, colour, focus and density ranges of
the calibration slides. ``cytoscreen domain-reference`` and ``scripts/make_domain_reference.py``
are thin wrappers.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import cytoscreen
from cytoscreen.batch import find_slides
from cytoscreen.config import Config
from cytoscreen.errors import CytoscreenError
from cytoscreen.fsutil import write_json_atomic
from cytoscreen.resolve import profile_cache
from cytoscreen.slide.domain import (
    FEATURE_NAMES,
    DomainProfile,
    DomainReference,
    compare,
    fit_reference,
)
from cytoscreen.synth import generate_slide, load_cell_kit
from cytoscreen.synth.cric import load_image_splits
from cytoscreen.synth.kit import BUNDLED_KIT, CellKit
from cytoscreen.synth.patches import Conditions, draw_spec
from cytoscreen.tiling import open_cache, tile_slide

# the calibration slides' stain, colour, focus and blood, over a wider span of densities: a
# dense conventional smear (overlapping cells, dark clusters) is in the domain too
REFERENCE_CONDITIONS = Conditions(
    density={"liquid": (300.0, 1500.0), "conventional": (1000.0, 3500.0)}
)
SAMPLE_NOTE = (
    "per slide up to 64 of the most cell-bearing valid patches from up to 8 cache "
    "chunks spread over the slide (cytoscreen.slide.domain.sample_indices)"
)


@dataclass(frozen=True)
class GeneratedSet:
    """What to generate when no in-domain slides are given."""

    n_slides: int = 24
    n_cells: int = 1500  # labelled cells per slide
    seed: int = 8300
    splits: tuple[str, ...] = ("train", "val")
    splits_file: Path | None = None  # the CRIC split by image; None: every field of the kit
    cells: Path | None = None  # CRIC folder with manifest.csv; None: full set or bundled kit


@dataclass(frozen=True)
class FittedReference:
    """The reference and the slides it was fitted to (``slides``: one record per profile)."""

    reference: DomainReference
    profiles: list[DomainProfile]
    slides: list[dict[str, Any]]
    left_out: list[str] = field(default_factory=list)


def _fit_kit(gen: GeneratedSet) -> tuple[CellKit, str]:
    """The fields of ``gen.splits`` (the model's training fields and the validation fields its
    threshold was calibrated on), and a description of them that names no local path."""
    kit = load_cell_kit(gen.cells)
    bundled = Path(kit.source).resolve() == BUNDLED_KIT.resolve()
    name = "CRIC Cervix fields (" + ("the bundled kit" if bundled else "the full development set")
    if gen.splits_file is None:
        return kit, f"{name}, all fields: no split file given)"
    shown = f"{gen.splits_file.parent.name}/{gen.splits_file.name}"
    try:
        images = load_image_splits(gen.splits_file).images
        ids = sorted({i for s in gen.splits for i in images[s]})
    except Exception as exc:  # noqa: BLE001 - fall back to every field, and say so
        return kit, f"{name}, all fields: no {'+'.join(gen.splits)} split available: {exc})"
    label = "+".join(gen.splits)
    return kit.subset(ids, source=f"{kit.source} [{label}]"), f"{name}, {label} splits of {shown})"


def _generated(
    gen: GeneratedSet, kit: CellKit, work: Path
) -> Iterator[tuple[Path, dict[str, Any]]]:
    (work / "slides").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(gen.seed)
    for i in range(gen.n_slides):
        label = "positive" if i % 2 else "negative"
        prep = ("liquid", "conventional")[(i // 2) % 2]
        spec = draw_spec(
            rng, label=label, n_cells=gen.n_cells, n_abnormal=5, prep=prep,
            seed=gen.seed * 10_007 + i, conditions=REFERENCE_CONDITIONS,
        )  # fmt: skip
        path = work / "slides" / f"domain_{gen.seed:04d}_{i:03d}.tiff"
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


def fit_domain_reference(
    cfg: Config,
    *,
    from_slides: Sequence[str | Path] | None = None,
    generated: GeneratedSet | None = None,
    work: str | Path | None = None,
    command: str = "",
    log: Callable[[str], None] | None = None,
) -> FittedReference:
    """Tile each slide with ``cfg`` (the screen configuration), profile it and fit the reference.

    ``from_slides`` (slides or folders) are a laboratory's own in-domain scans; without them
    the slides of ``generated`` are made. Slides and caches go to ``work`` (kept), or to a
    temporary folder removed afterwards. ``command`` (the command line) is recorded as how
    the reference was made. ``log`` gets one line per slide. Raises ``CytoscreenError`` when
    fewer than three slides could be profiled.
    """
    say = log or (lambda _msg: None)
    gen = generated or GeneratedSet()
    work_dir = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="domain-ref-"))
    kit_source: tuple[CellKit, str] | None = None
    if from_slides:
        inputs: Iterator[tuple[Path, dict[str, Any]]] = (
            (s.path, {"name": s.relative}) for s in find_slides(from_slides)
        )
    else:
        kit_source = _fit_kit(gen)
        inputs = _generated(gen, kit_source[0], work_dir)
    profiles: list[DomainProfile] = []
    slides: list[dict[str, Any]] = []
    left_out: list[str] = []
    try:
        for path, row in inputs:
            t0 = time.perf_counter()
            profile = profile_cache(open_cache(tile_slide(path, cfg, work_dir / "cache")))
            if profile is None:
                left_out.append(path.name)
                say(f"{path.name}: no foreground patch, left out")
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
            say(f"{path.name} ({time.perf_counter() - t0:.1f} s): {values}")
    finally:
        if work is None:
            shutil.rmtree(work_dir, ignore_errors=True)

    common = {
        "slides": slides,
        "tiling": {"target_mpp": cfg.tiling.target_mpp, "patch_size": cfg.tiling.patch_size},
        "sample": SAMPLE_NOTE,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "cytoscreen": cytoscreen.__version__,
    }
    source: dict[str, Any]
    if kit_source is None:
        source = {
            "description": "slides given as in-domain by whoever ran the script; statistics of "
            "a sample of each slide's cached patches",
            "script": command,
            **common,
        }
    else:
        kit, described = kit_source
        source = {
            "description": (
                "generated Pap slides (cytoscreen.synth) of real CRIC Cervix cells, the cells the "
                "model was trained on and those its threshold was calibrated on; statistics of a "
                "sample of each slide's cached patches"
            ),
            "generator": "cytoscreen.synth.generate_slide",
            "cells": described,
            "n_cells": len(kit),
            "script": command,
            **common,
        }
    try:
        reference = fit_reference(profiles, source)
    except ValueError as exc:
        raise CytoscreenError(
            str(exc),
            subject=", ".join(map(str, from_slides)) if from_slides else "the generated slides",
            hint="give at least 3 stained in-domain slides with --from-slides, or more --slides",
        ) from None
    return FittedReference(reference, profiles, slides, left_out)


def write_reference(fitted: FittedReference, out: str | Path) -> Path:
    """Write the reference record (``domain.json``) atomically; returns its path."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CytoscreenError(
            f"cannot create the output folder ({exc.strerror})",
            subject=out.parent,
            hint="choose another --out or fix the folder's permissions",
        ) from None
    write_json_atomic(out, fitted.reference.to_dict())
    return out


def summary_lines(fitted: FittedReference) -> list[str]:
    """Each statistic's centre, spread and range, then each slide's in-sample shift."""
    lines = [f"{'statistic':26s} {'centre':>9s} {'spread':>8s} {'min':>9s} {'max':>9s}"]
    for name in FEATURE_NAMES:
        f = fitted.reference.features[name]
        lines.append(
            f"{name:26s} {f.centre:9.4f} {f.spread:8.4f} {f.minimum:9.4f} {f.maximum:9.4f}"
        )
    lines += ["", "shift of the reference slides themselves (in-sample):"]
    for row, p in zip(fitted.slides, fitted.profiles, strict=True):
        c = compare(p, fitted.reference)
        lines.append(f"  {row['name']:28s} shift {c.shift:5.2f}  {c.note}")
    return lines
