"""read_at_mpp: a patch at 0.5 um/px shows the same field whatever the scan resolution."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cytoscreen.io import open_slide, plan_read, read_at_mpp

FIELD_UM = (100.0, 80.0)  # scene size in micrometres
ORIGIN_UM = (30.0, 18.0)  # patch top-left in micrometres
PATCH = (96, 80)  # (width, height) at 0.5 um/px
# Measured (lossless tiles, both backends): mean |diff| 0.07 (0.25 um/px), 0.10 (0.3 um/px)
# grey levels; shifting the field by 4 um gives ~3.8, so this bound separates right from wrong.
MAX_MEAN_DIFF = 0.5


@pytest.fixture(scope="module")
def scenes(
    write_slide: Callable[..., Path], render_scene: Callable[..., np.ndarray]
) -> dict[str, Path]:
    out = {}
    for mpp in (0.25, 0.3, 0.5):
        image = render_scene(*FIELD_UM, mpp)
        # one level only (min_size above the image size): read_at_mpp must resample level 0
        out[f"{mpp}"] = write_slide(image, mpp=mpp, compression="zlib", min_size=4096)
    out["0.25-pyramid"] = write_slide(
        render_scene(*FIELD_UM, 0.25), mpp=0.25, compression="zlib", min_size=128
    )
    return out


def _patch(path: Path, backend: str, shift_um: float = 0.0) -> np.ndarray:
    with open_slide(path, backend) as r:  # type: ignore[arg-type]
        loc = (round((ORIGIN_UM[0] + shift_um) / r.meta.mpp), round(ORIGIN_UM[1] / r.meta.mpp))
        patch = read_at_mpp(r, loc, PATCH, 0.5)
    assert patch.shape == (PATCH[1], PATCH[0], 3) and patch.dtype == np.uint8
    return patch.astype(float)


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
@pytest.mark.parametrize("scan", ["0.25", "0.3", "0.25-pyramid"])
def test_same_field_at_any_scan_resolution(
    scenes: dict[str, Path], backend: str, scan: str
) -> None:
    reference = _patch(scenes["0.5"], backend)
    assert reference.std() > 10  # the field holds stained blobs, not just background
    diff = np.abs(_patch(scenes[scan], backend) - reference).mean()
    assert diff < MAX_MEAN_DIFF


def test_a_shifted_field_is_detected(scenes: dict[str, Path]) -> None:
    reference = _patch(scenes["0.5"], "openslide")
    diff = np.abs(_patch(scenes["0.25"], "openslide", shift_um=4.0) - reference).mean()
    assert diff > 4 * MAX_MEAN_DIFF


def test_pyramid_level_is_read_as_is(scenes: dict[str, Path]) -> None:
    with open_slide(scenes["0.25-pyramid"]) as r:
        plan = plan_read(r.meta, (0, 0), PATCH, 0.5)
    assert plan.level == 1 and plan.size == PATCH and not plan.needs_resample
