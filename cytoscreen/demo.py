"""The demo: a handful of small generated slides, screened end to end.

Demo slides are 2 mm miniatures (8,192 px at 0.25 um/px) of a 20 mm liquid-based preparation,
built from the bundled kit of real CRIC cells: two negative, two positive (LSIL, HSIL), one
blank slide and one negative slide as a monochrome scanner would record it; the last two must
come out not assessable (no cells; unlike the training data), never negative. Because they
hold about 1% of a full preparation's area, the Bethesda adequacy minimum (5,000 squamous
cells on a whole slide) is scaled by area for the demo, and the demo says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cytoscreen.config import Config, load_config

DEMO_SIZE = 8192  # level-0 px at 0.25 um/px: a 2 mm square holding a ~1.9 mm cell circle
FULL_PREP_MM = 20.0


@dataclass(frozen=True)
class DemoSlide:
    name: str
    label: str
    worst: str | None
    seed: int
    greyscale: bool = False  # written as a monochrome scan: off the model's domain


DEMO_SLIDES = (
    DemoSlide("negative-a", "negative", None, 101),
    DemoSlide("negative-b", "negative", None, 102),
    DemoSlide("positive-lsil", "positive", "LSIL", 103),
    DemoSlide("positive-hsil", "positive", "HSIL", 104),
    DemoSlide("blank", "blank", None, 105),
    DemoSlide("greyscale-scan", "negative", None, 106, greyscale=True),
)


def area_scale(size_px: int = DEMO_SIZE, mpp: float = 0.25) -> float:
    """Share of a 20 mm preparation's circle that a demo slide's cell circle covers."""
    from cytoscreen.synth.layout import SlideSpec

    diameter_mm = SlideSpec().circle_fraction * size_px * mpp / 1000.0
    return (diameter_mm / FULL_PREP_MM) ** 2


def demo_config(base: Config | None = None) -> tuple[Config, str]:
    """The default config with the adequacy minimum scaled to the demo slides' area."""
    cfg = base or load_config()
    scale = area_scale()
    minimum = max(1, round(cfg.triage.min_cellularity * scale))
    note = (
        f"demo slides cover {scale:.1%} of a {FULL_PREP_MM:.0f} mm preparation: the adequacy "
        f"minimum is scaled from {cfg.triage.min_cellularity} to {minimum} cells"
    )
    data = cfg.to_dict()
    data["triage"]["min_cellularity"] = minimum
    return Config.model_validate(data), note


def build_demo_slides(folder: Path) -> list[Path]:
    """Write the demo slides (and their ground truth) into ``folder``; existing ones are kept."""
    from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide
    from cytoscreen.synth.slide import greyscale

    folder.mkdir(parents=True, exist_ok=True)
    kit = bundled_kit()
    paths = []
    for s in DEMO_SLIDES:
        path = folder / f"{s.name}.tiff"
        truth = folder / f"{s.name}.cells.json"
        if not (path.is_file() and truth.is_file()):
            spec = SlideSpec(
                size=DEMO_SIZE,
                label=s.label,  # type: ignore[arg-type]
                seed=s.seed,
                worst_bethesda=s.worst,
                clustering=0.5,
            )
            generate_slide(path, spec, kit, transform=greyscale if s.greyscale else None)
        paths.append(path)
    return paths
