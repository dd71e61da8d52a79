"""The demo: a handful of generated slides, screened end to end.

Demo slides are adequate preparations (6,000 labelled cells each, above the Bethesda minimum of
5,000 squamous cells for a liquid-based preparation) built from the bundled kit of real CRIC
fields (the test split: no model was trained or calibrated on them): two negative, two positive
(LSIL, HSIL), one liquid-based and one conventional of each, one blank slide and one negative
slide as a monochrome scanner would record it. The last two must come out not assessable (no
cells; unlike the training data), never negative. The kit is small, so each of its pieces is
placed many times on a demo slide, in every orientation and stain strength.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cytoscreen.config import Config, load_config

DEMO_CELLS = 6000  # labelled cells per demo slide
DENSITY = {"liquid": 1000.0, "conventional": 1800.0}  # cells per mm^2 (small, fast slides)


@dataclass(frozen=True)
class DemoSlide:
    name: str
    label: str
    worst: str | None
    seed: int
    prep: str = "liquid"
    greyscale: bool = False  # written as a monochrome scan: off the model's domain
    n_abnormal: int | None = None


DEMO_SLIDES = (
    DemoSlide("negative-a", "negative", None, 101, "liquid"),
    DemoSlide("negative-b", "negative", None, 102, "conventional"),
    DemoSlide("positive-lsil", "positive", "LSIL", 103, "liquid", n_abnormal=12),
    DemoSlide("positive-hsil", "positive", "HSIL", 104, "conventional", n_abnormal=30),
    DemoSlide("blank", "blank", None, 105, "liquid"),
    DemoSlide("greyscale-scan", "negative", None, 106, "liquid", greyscale=True),
)


def demo_config(base: Config | None = None) -> tuple[Config, str]:
    """The configuration the demo screens with, and a note on what the demo slides are."""
    cfg = base or load_config()
    note = (
        f"demo slides hold {DEMO_CELLS:,} labelled cells each (adequacy minimum "
        f"{cfg.triage.min_cellularity:,}); the bundled kit is small, so its cells repeat"
    )
    return cfg, note


def demo_spec(s: DemoSlide, n_cells: int | None = None) -> object:
    """The generator settings of one demo slide."""
    from cytoscreen.synth.layout import SlideSpec, size_for

    prep = s.prep
    n_cells = n_cells or DEMO_CELLS
    return SlideSpec(
        size=size_for(n_cells, DENSITY[prep], prep),  # type: ignore[arg-type]
        label=s.label,  # type: ignore[arg-type]
        seed=s.seed,
        prep=prep,  # type: ignore[arg-type]
        density=DENSITY[prep],
        n_cells=n_cells,
        worst_bethesda=s.worst,
        n_abnormal=s.n_abnormal,
        blood=0.15,
    )


def build_demo_slides(folder: Path, n_cells: int | None = None) -> list[Path]:
    """Write the demo slides (and their ground truth) into ``folder``; existing ones are kept."""
    from cytoscreen.synth import bundled_kit, generate_slide
    from cytoscreen.synth.layout import SlideSpec
    from cytoscreen.synth.slide import greyscale

    folder.mkdir(parents=True, exist_ok=True)
    kit = bundled_kit()
    paths = []
    for s in DEMO_SLIDES:
        path = folder / f"{s.name}.tiff"
        truth = folder / f"{s.name}.cells.json"
        if not (path.is_file() and truth.is_file()):
            spec = demo_spec(s, n_cells)
            assert isinstance(spec, SlideSpec)
            generate_slide(path, spec, kit, transform=greyscale if s.greyscale else None)
        paths.append(path)
    return paths
