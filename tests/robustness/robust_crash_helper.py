"""Importable (by name) from the tiling child process: a tile step that crashes natively for
slides whose file name asks for it, and tiles every other slide normally."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from cytoscreen.tiling import tile_slide


def tile_or_crash(path: str | Path, *args: Any, **kwargs: Any) -> Path:
    name = Path(path).name
    if "segfault" in name:
        ctypes.string_at(0)  # reads address 0: SIGSEGV, as a broken native decoder would
    if "abort" in name:
        os.abort()
    return tile_slide(path, *args, **kwargs)


def tile_slowly(path: str | Path, *args: Any, **kwargs: Any) -> Path:
    """``tile_slide`` that, for slides named ``slow*``, touches a file in $ROBUST_MARKS after
    each chunk it writes and then pauses, so a test can kill the run mid-tiling."""
    import time

    import cytoscreen.tiling.cache as cache

    marks = Path(os.environ["ROBUST_MARKS"])
    original = cache.write_chunk

    def write_chunk(store: str, chunk: int, *rest: Any) -> int:
        n = original(store, chunk, *rest)
        (marks / f"tiled-{chunk}").touch()
        time.sleep(0.3)
        return n

    if Path(path).name.startswith("slow"):
        cache.write_chunk = write_chunk  # type: ignore[assignment]
    try:
        return tile_slide(path, *args, **kwargs)
    finally:
        cache.write_chunk = original
