"""Level choice and read planning: pure maths, no slide needed."""

from __future__ import annotations

import numpy as np
import pytest

from cytoscreen.io.resolution import best_level, plan_read, resample
from cytoscreen.types import SlideMeta


@pytest.mark.parametrize(
    ("mpps", "target", "tol", "expected"),
    [
        ([0.25, 0.5, 1.0, 2.0], 0.5, 0.02, 1),  # exact level
        ([0.25, 0.5, 1.0, 2.0], 0.7, 0.02, 1),  # between levels: the finer one
        ([0.25, 0.5, 1.0, 2.0], 0.99, 0.02, 2),  # within tolerance of 1.0
        ([0.25, 0.5, 1.0, 2.0], 0.97, 0.02, 1),  # 1.0 is 3% too coarse
        ([0.25, 0.5, 1.0, 2.0], 8.0, 0.02, 3),  # coarser than every level: the coarsest
        ([0.25, 0.5, 1.0, 2.0], 0.1, 0.02, 0),  # finer than every level: level 0
        ([0.499], 0.5, 0.02, 0),
        ([0.2527, 1.0108, 4.0432], 1.0, 0.02, 1),  # Aperio-style 4x pyramid
        ([0.2527, 1.0108, 4.0432], 1.0, 0.0, 0),  # no tolerance: 1.0108 is too coarse
        ([1.0, 0.25, 0.5], 0.6, 0.02, 2),  # unsorted levels: chosen by mpp, not index
        ([0.5, 0.5], 0.5, 0.0, 0),  # ties: the lower index
    ],
)
def test_best_level(mpps: list[float], target: float, tol: float, expected: int) -> None:
    assert best_level(mpps, target, tol) == expected


@pytest.mark.parametrize(
    ("mpps", "target", "tol"),
    [([], 0.5, 0.02), ([0.25], 0.0, 0.02), ([0.25], float("nan"), 0.02), ([0.25], 0.5, -0.1)],
)
def test_best_level_rejects_bad_input(mpps: list[float], target: float, tol: float) -> None:
    with pytest.raises(ValueError):
        best_level(mpps, target, tol)


def _meta(mpp: float, downsamples: tuple[float, ...] = (1.0, 2.0, 4.0)) -> SlideMeta:
    return SlideMeta(
        backend="tiffslide",
        vendor="generic-tiff",
        dimensions=(8000, 6000),
        level_dimensions=tuple((round(8000 / d), round(6000 / d)) for d in downsamples),
        level_downsamples=downsamples,
        mpp_x=mpp,
        mpp_y=mpp,
    )


@pytest.mark.parametrize(
    ("mpp", "target", "level", "size", "scale"),
    [
        (0.25, 0.5, 1, (224, 160), 1.0),  # a level at the target: read as-is
        (0.25, 1.0, 2, (224, 160), 1.0),
        (0.25, 0.75, 1, (336, 240), 1.5),  # between levels: read more, shrink
        (0.3, 0.5, 0, (373, 267), 0.5 / 0.3),  # non-integer ratio: rounded region
        (0.499, 0.5, 0, (224, 160), 1.0),  # within 2%: no resampling
        (0.25, 4.0, 2, (896, 640), 4.0),  # coarser than the pyramid: read the coarsest
        (1.0, 0.5, 0, (112, 80), 0.5),  # scanned coarser than the target: upsample
    ],
)
def test_plan_read(
    mpp: float, target: float, level: int, size: tuple[int, int], scale: float
) -> None:
    plan = plan_read(_meta(mpp), (1000, 2000), (224, 160), target, 0.02)
    assert plan.level == level
    assert plan.size == size
    assert plan.scale == pytest.approx(scale)
    assert plan.location == (1000, 2000)
    assert plan.out_size == (224, 160)
    assert plan.needs_resample == (size != (224, 160))


def test_plan_read_covers_the_same_field_at_any_scan_resolution() -> None:
    field_um = (224 * 0.5, 160 * 0.5)
    for mpp in (0.2, 0.2527, 0.3, 0.45, 0.5):
        plan = plan_read(_meta(mpp), (0, 0), (224, 160), 0.5)
        level_mpp = mpp * (1.0, 2.0, 4.0)[plan.level]
        covered = (plan.size[0] * level_mpp, plan.size[1] * level_mpp)
        # rounding to whole pixels: within half a pixel per side (plus the 2% tolerance)
        for got, want in zip(covered, field_um, strict=True):
            assert abs(got - want) <= 0.02 * want + level_mpp


def test_plan_read_rejects_empty_size() -> None:
    with pytest.raises(ValueError):
        plan_read(_meta(0.25), (0, 0), (0, 10), 0.5)


def test_resample_exact_size_and_antialiasing() -> None:
    # 1-px black/white stripes: a naive 2x subsample keeps one colour; an anti-aliased one is grey
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255
    out = resample(stripes, (32, 16))
    assert out.shape == (16, 32, 3) and out.dtype == np.uint8
    assert abs(float(out[4:-4, 4:-4].mean()) - 127.5) < 3
    assert out[4:-4, 4:-4].std() < 3
    same = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert resample(same, (4, 4)) is same
