"""Slide reading: ``open_slide`` -> ``SlideReader`` (OpenSlide or tiffslide backend)."""

from cytoscreen.io.base import RGBArray, SlideReader
from cytoscreen.io.identity import slide_key
from cytoscreen.io.info import info_rows
from cytoscreen.io.opener import fast_backend, open_slide
from cytoscreen.io.openslide_backend import OpenSlideReader
from cytoscreen.io.resolution import ReadPlan, best_level, plan_read, read_at_mpp, resample
from cytoscreen.io.tiffslide_backend import TiffSlideReader

__all__ = [
    "OpenSlideReader",
    "RGBArray",
    "ReadPlan",
    "SlideReader",
    "TiffSlideReader",
    "best_level",
    "fast_backend",
    "info_rows",
    "open_slide",
    "plan_read",
    "read_at_mpp",
    "resample",
    "slide_key",
]
