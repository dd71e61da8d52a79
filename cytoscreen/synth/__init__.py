"""Synthetic whole-slide images built from real CRIC cells, with ground truth.

- ``cric``: the CRIC manifest, its fields and the split by image (``read_cric``, ``split_images``)
- ``fields``: crops pasted back into their fields, cut into pieces (negative, abnormal units)
- ``kit``: the cell kit (``load_cell_kit``): pieces of real fields, blood and debris sprites
- ``compose``: pure Beer-Lambert compositing shared with training (``cell_alpha``, ``composite``)
- ``slide``: ``generate_slide(out_path, SlideSpec(...), kit) -> SlideTruth``
- ``slideset``: ``make_slide_set(out_dir, n_negative, n_positive, size, ...) -> manifest path``
- ``tiffwriter``: pyramidal tiled TIFFs readable by OpenSlide and tiffslide
"""

from cytoscreen.synth.compose import cell_alpha, composite, od_to_rgb, rgb_to_od
from cytoscreen.synth.kit import BETHESDA_ORDER, CellKit, bundled_kit, load_cell_kit
from cytoscreen.synth.layout import SlideSpec, size_for
from cytoscreen.synth.slide import CellTruth, SlideTruth, generate_slide, load_truth
from cytoscreen.synth.slideset import make_slide_set

__all__ = [
    "BETHESDA_ORDER",
    "CellKit",
    "CellTruth",
    "SlideSpec",
    "SlideTruth",
    "bundled_kit",
    "cell_alpha",
    "composite",
    "generate_slide",
    "load_cell_kit",
    "load_truth",
    "size_for",
    "make_slide_set",
    "od_to_rgb",
    "rgb_to_od",
]
