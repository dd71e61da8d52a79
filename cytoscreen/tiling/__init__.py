"""Tiling: foreground mask, patch grid and the resumable Dask -> Zarr patch cache."""

from cytoscreen.tiling.cache import open_cache, tile_slide, tile_slides
from cytoscreen.tiling.foreground import ForegroundMask, slide_foreground, stain_mask
from cytoscreen.tiling.grid import GridSpec, build_grid
from cytoscreen.tiling.store import PatchStore, StoreAttrs

__all__ = [
    "ForegroundMask",
    "GridSpec",
    "PatchStore",
    "StoreAttrs",
    "build_grid",
    "open_cache",
    "slide_foreground",
    "stain_mask",
    "tile_slide",
    "tile_slides",
]
