"""The cascade's first-stage helpers: the pooling factor and the block-mean downsampling."""

from __future__ import annotations

import numpy as np
import pytest

from cytoscreen.scoring.cascade import downsample, pool_factor


def test_pool_factor_whole_multiples() -> None:
    assert pool_factor(0.25, 0.5) == 2
    assert pool_factor(0.25, 0.25) == 1
    assert pool_factor(0.2527, 0.5) == 2  # a scanner's 0.2527 um/px still pools 2 x 2


@pytest.mark.parametrize(("patch", "stage"), [(0.25, 0.375), (0.5, 0.25)])
def test_pool_factor_refuses_other_ratios(patch: float, stage: float) -> None:
    with pytest.raises(ValueError, match="whole multiple"):
        pool_factor(patch, stage)


def test_downsample_is_the_rounded_block_mean() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 8, 12, 3), dtype=np.uint8)
    out = downsample(x, 2)
    blocks = x.reshape(3, 4, 2, 6, 2, 3).astype(np.float64).mean(axis=(2, 4))
    assert out.shape == (3, 4, 6, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(np.float64) - blocks).max() <= 0.5 + 1e-9
    assert downsample(x, 1) is x


def test_downsample_refuses_sizes_that_do_not_divide() -> None:
    with pytest.raises(ValueError, match="do not divide"):
        downsample(np.zeros((1, 9, 8, 3), np.uint8), 2)
