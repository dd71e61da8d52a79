"""Fixtures for the reader tests: analytic scenes and small slides written once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import tifffile


def render_scene(width_um: float, height_um: float, mpp: float, seed: int = 3) -> np.ndarray:
    """A cytology-like scene defined in micrometres, sampled at pixel centres at ``mpp``.

    Pale background with Gaussian stained blobs (sigma 2-6 um): the same physical content at
    any resolution, so reads at a common mpp can be compared across scan resolutions.
    """
    rng = np.random.default_rng(seed)
    n = 30
    cx, cy = rng.uniform(0, width_um, n), rng.uniform(0, height_um, n)
    sigma, amp = rng.uniform(2.0, 6.0, n), rng.uniform(0.4, 0.9, n)
    w, h = round(width_um / mpp), round(height_um / mpp)
    xs, ys = (np.arange(w) + 0.5) * mpp, (np.arange(h) + 0.5) * mpp
    gx = np.exp(-((xs[None, :] - cx[:, None]) ** 2) / (2 * sigma[:, None] ** 2))  # (n, w)
    gy = np.exp(-((ys[None, :] - cy[:, None]) ** 2) / (2 * sigma[:, None] ** 2))  # (n, h)
    od = np.einsum("n,nh,nw->hw", amp, gy, gx)
    background, stain = np.array([235.0, 230.0, 240.0]), np.array([0.5, 1.0, 0.3])
    rgb = background * np.exp(-od[..., None] * stain)
    return np.clip(rgb, 0, 255).round().astype(np.uint8)


@pytest.fixture(name="render_scene", scope="session")
def render_scene_fixture() -> Callable[..., np.ndarray]:
    return render_scene


@pytest.fixture(scope="session")
def gradient_image() -> npt.NDArray[np.uint8]:
    """1100 x 1300 px RGB with structure in every channel (no flat areas)."""
    yy, xx = np.mgrid[0:1100, 0:1300]
    return np.stack(
        [128 + 100 * np.sin(xx / 17.0), 128 + 100 * np.cos(yy / 23.0), (xx + yy) % 256], -1
    ).astype(np.uint8)


@pytest.fixture(scope="session")
def pyramid_tiff(write_slide: Callable[..., Path], gradient_image: npt.NDArray[np.uint8]) -> Path:
    """Lossless 4-level pyramid (factor 2) at 0.25 um/px."""
    return write_slide(gradient_image, mpp=0.25, compression="zlib", min_size=200, name="pyr.tif")


@pytest.fixture(scope="session")
def no_mpp_tiff(write_slide: Callable[..., Path], gradient_image: npt.NDArray[np.uint8]) -> Path:
    return write_slide(gradient_image[:300, :300], mpp=None, name="nompp.tif")


@pytest.fixture(scope="session")
def rgba_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """512 x 512 tiled RGBA: opaque left half, alpha 128 band (x 256-383), transparent right."""
    rgba = np.zeros((512, 512, 4), np.uint8)
    rgba[..., :3] = (30, 60, 200)
    rgba[..., 3] = 255
    rgba[:, 256:384, 3] = 128
    rgba[:, 384:] = 0
    path = tmp_path_factory.mktemp("rgba") / "rgba.tif"
    tifffile.imwrite(
        path,
        rgba,
        tile=(256, 256),
        photometric="rgb",
        extrasamples=["unassalpha"],
        compression="zlib",
        resolution=(1e4 / 0.5, 1e4 / 0.5),
        resolutionunit="CENTIMETER",
    )
    return path
