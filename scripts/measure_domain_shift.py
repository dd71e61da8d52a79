"""Domain shift of in-domain and off-domain slides: the margins behind triage.max_domain_shift.

    nice -n 10 .venv/bin/python scripts/measure_domain_shift.py \
        --reference cytoscreen/models/default/domain.json --work /tmp/domain-margins

In-domain (none of them used to fit the reference): the demo slides (bundled kit), generated
slides of CRIC *test* cells at three densities (``--test-slides``), and tiny test-suite slides
tiled into 32-px patches. Off-domain: the real H&E slide tests/data/CMU-1-Small-Region.svs, and
each in-domain slide's patch sample turned greyscale, red/blue swapped (BGR), channel-rotated
(GBR), inverted (fluorescence-like dark background), overexposed (x1.6, clipped), underexposed
(x0.5), washed out (stain optical density x0.15) and near blank (x0.03). Prints every shift,
then per kind the range, and the margins to ``--limit``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cytoscreen.config import Config, load_config
from cytoscreen.demo import build_demo_slides
from cytoscreen.resolve import sample_patches
from cytoscreen.slide.domain import DomainReference, compare, profile_patches
from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide, load_cell_kit
from cytoscreen.synth.cric import load_image_splits
from cytoscreen.synth.patches import draw_spec
from cytoscreen.tiling import open_cache, tile_slide

Patches = npt.NDArray[np.uint8]
REPO = Path(__file__).resolve().parents[1]
HE_SLIDE = REPO / "tests" / "data" / "CMU-1-Small-Region.svs"
SPLITS_FILE = "data_manifests/cric_splits.json"


def _stain_scaled(p: Patches, factor: float) -> Patches:
    """The same stain with its optical density scaled against each patch's glass."""
    glass = np.percentile(p.reshape(-1, 3), 99, axis=0).astype(np.float32)
    od = -np.log10(np.maximum(p.astype(np.float32), 1.0) / glass)
    return np.clip(glass * 10.0 ** (-factor * od), 0, 255).astype(np.uint8)


TRANSFORMS: dict[str, Callable[[Patches], Patches]] = {
    "greyscale": lambda p: p.mean(axis=3, keepdims=True).round().astype(np.uint8).repeat(3, 3),
    "bgr": lambda p: np.ascontiguousarray(p[..., ::-1]),
    "gbr": lambda p: np.ascontiguousarray(p[..., [1, 2, 0]]),
    "inverted": lambda p: 255 - p,
    "overexposed": lambda p: np.clip(p.astype(np.float32) * 1.6, 0, 255).astype(np.uint8),
    "underexposed": lambda p: (p.astype(np.float32) * 0.5).astype(np.uint8),
    "washed_out": lambda p: _stain_scaled(p, 0.15),
    "near_blank": lambda p: _stain_scaled(p, 0.03),
}


def _tiny_cfg(cfg: Config) -> Config:
    data = cfg.to_dict()
    data["tiling"].update(patch_size=32, target_mpp=0.5)
    return Config.model_validate(data)


def _in_domain(work: Path, cfg: Config, n_test: int) -> Iterator[tuple[str, str, Patches | None]]:
    cache = work / "cache"
    for path in build_demo_slides(work / "demo"):
        yield "demo", path.stem, sample_patches(open_cache(tile_slide(path, cfg, cache)))
    try:
        splits = load_image_splits(Path(__file__).resolve().parents[1] / SPLITS_FILE)
        kit = load_cell_kit()
        kit = kit.subset(splits.images["test"], source=f"{kit.source} [test]")
    except Exception:  # noqa: BLE001 - no split file: the bundled kit still gives unseen slides
        kit = bundled_kit()
    (work / "test").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(9100)
    for i in range(n_test):
        path = work / "test" / f"test_{i}.tiff"
        spec = draw_spec(
            rng, label="positive" if i % 2 else "negative", n_cells=1500, n_abnormal=5,
            prep=("liquid", "conventional")[i % 2], seed=9100 + i,
        )  # fmt: skip
        if not path.is_file():
            generate_slide(path, spec, kit)
        yield "test-cells", path.stem, sample_patches(open_cache(tile_slide(path, cfg, cache)))
    tiny = _tiny_cfg(cfg)
    (work / "tiny").mkdir(parents=True, exist_ok=True)
    for i in range(4):
        path = work / "tiny" / f"tiny_{i}.tiff"
        if not path.is_file():
            label = "positive" if i % 2 else "negative"
            spec = SlideSpec(
                size=768,
                label=label,  # type: ignore[arg-type]
                seed=1 + i,
                density=3000.0,
                n_abnormal=4 if label == "positive" else None,
            )
            generate_slide(path, spec, bundled_kit())
        yield "tiny-32px", path.stem, sample_patches(open_cache(tile_slide(path, tiny, cache)))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--reference", type=Path, required=True)
    ap.add_argument("--limit", type=float, default=None, help="limit to report margins to")
    ap.add_argument("--work", type=Path, default=None, help="slides and caches (kept)")
    ap.add_argument("--test-slides", type=int, default=9, help="slides of CRIC test cells")
    args = ap.parse_args()
    ref = DomainReference.from_dict(json.loads(args.reference.read_text(encoding="utf-8")))
    work = args.work or Path(tempfile.mkdtemp(prefix="domain-margins-"))
    cfg = load_config(overrides={"cache.workers": 1})

    rows: list[tuple[str, str, float, bool, str]] = []

    def add(kind: str, name: str, patches: Patches | None) -> None:
        if patches is None:
            print(f"{kind:16s} {name:16s} no foreground patch (not profiled)")
            return
        check = compare(profile_patches(patches), ref, args.limit)
        rows.append((kind, name, check.shift, check.measured, check.note))
        flag = "" if check.measured else " [stain not measured]"
        print(f"{kind:16s} {name:16s} shift {check.shift:7.2f}{flag}  {check.note}", flush=True)

    samples = []
    for kind, name, patches in _in_domain(work, cfg, args.test_slides):
        add(f"in:{kind}", name, patches)
        if patches is not None:
            samples.append((name, patches))
    for tiled in (cfg, _tiny_cfg(cfg)):
        px = tiled.tiling.patch_size
        he = sample_patches(open_cache(tile_slide(HE_SLIDE, tiled, work / "cache")))
        add("off:h&e", f"CMU-1 {px}px", he)
    for tname, fn in TRANSFORMS.items():
        for name, patches in samples:
            add(f"off:{tname}", name, fn(patches))

    print(f"\n{'kind':18s} {'n':>3s} {'min shift':>10s} {'max shift':>10s} {'unmeasured':>10s}")
    kinds = sorted({r[0] for r in rows}, key=lambda k: (not k.startswith("in:"), k))
    for kind in kinds:
        sel = [r for r in rows if r[0] == kind]
        shifts = [r[2] for r in sel]
        unmeasured = sum(not r[3] for r in sel)
        print(f"{kind:18s} {len(sel):3d} {min(shifts):10.2f} {max(shifts):10.2f} {unmeasured:10d}")
    inside = [r[2] for r in rows if r[0].startswith("in:")]
    outside = [r for r in rows if r[0].startswith("off:")]
    print(f"\nin-domain: largest shift {max(inside):.2f} ({len(inside)} slides)")
    if args.limit is not None:
        missed = [r for r in outside if r[3] and r[2] <= args.limit]
        false = [r for r in rows if r[0].startswith("in:") and (not r[3] or r[2] > args.limit)]
        print(
            f"limit {args.limit:g}: in-domain flagged {len(false)} of {len(inside)}; "
            f"off-domain missed {len(missed)} of {len(outside)}"
        )
        for r in missed:
            print(f"  missed {r[0]} {r[1]} shift {r[2]:.2f}")
        for r in false:
            print(f"  flagged in-domain {r[0]} {r[1]} shift {r[2]:.2f}: {r[4]}")


if __name__ == "__main__":
    main()
