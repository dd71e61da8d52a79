"""One contract, held against both backends (OpenSlide and tiffslide)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import openslide
import pytest
import tiffslide.tiffslide as tiffslide_module

from cytoscreen.errors import InvalidMpp, MissingMpp
from cytoscreen.io import SlideReader, info_rows, open_slide, read_at_mpp
from cytoscreen.types import BackendName

BACKENDS: tuple[BackendName, ...] = ("openslide", "tiffslide")
# Measured: both backends decode CMU-1 (libjpeg-turbo in both) to identical pixels (max 0).
CROSS_BACKEND_MAX_DIFF = 2

CMU1_REGIONS = [
    ((0, 0), (2220, 2967)),  # the whole slide
    ((1000, 1500), (300, 200)),
    ((2100, 2900), (300, 200)),  # runs off the bottom-right corner
    ((-50, -50), (100, 100)),  # runs off the top-left corner
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> BackendName:
    value: BackendName = request.param
    return value


@pytest.fixture
def cmu1(cmu1_path: Path, backend: BackendName) -> Iterator[SlideReader]:
    with open_slide(cmu1_path, backend) as reader:
        yield reader


class TestReaderContract:
    def test_cmu1_metadata(self, cmu1: SlideReader, backend: BackendName) -> None:
        m = cmu1.meta
        assert isinstance(cmu1, SlideReader)
        assert m.backend == backend
        assert m.vendor == "aperio"
        assert m.dimensions == (2220, 2967)
        assert m.level_dimensions == ((2220, 2967),)
        assert m.level_downsamples == (1.0,)
        assert m.mpp_x == pytest.approx(0.499) and m.mpp_y == pytest.approx(0.499)
        assert m.mpp_source == "slide"
        assert m.objective_power == pytest.approx(20.0)

    def test_read_region_is_rgb_uint8(self, cmu1: SlideReader) -> None:
        region = cmu1.read_region((1000, 1500), 0, (64, 48))
        assert region.shape == (48, 64, 3) and region.dtype == np.uint8
        assert region.std() > 5  # tissue, not an empty fill

    def test_outside_the_slide_is_white(self, cmu1: SlideReader) -> None:
        region = cmu1.read_region((2200, 2950), 0, (60, 40))
        assert region.shape == (40, 60, 3)
        assert (region[20:, 20:] == 255).all()  # beyond x=2220, y=2967
        assert (cmu1.read_region((5000, 5000), 0, (10, 10)) == 255).all()

    def test_synthetic_pyramid(
        self, pyramid_tiff: Path, gradient_image: npt.NDArray[np.uint8], backend: BackendName
    ) -> None:
        with open_slide(pyramid_tiff, backend) as r:
            assert r.meta.vendor == "generic-tiff"
            assert r.meta.dimensions == (1300, 1100)
            assert r.meta.level_dimensions == ((1300, 1100), (650, 550), (325, 275), (163, 138))
            assert r.meta.level_downsamples[:3] == (1.0, 2.0, 4.0)
            assert r.meta.mpp == pytest.approx(0.25)
            assert r.meta.level_mpp(1) == pytest.approx(0.5)
            assert r.meta.objective_power is None
            # lossless: level 0 is the written array, exactly
            got = r.read_region((96, 64), 0, (200, 150))
            np.testing.assert_array_equal(got, gradient_image[64:214, 96:296])
            # level 1 is the 2x2 block mean of level 0
            lvl1 = r.read_region((200, 100), 1, (40, 30)).astype(float)
            block = gradient_image[100:160, 200:280].reshape(30, 2, 40, 2, 3).mean(axis=(1, 3))
            assert np.abs(lvl1 - block).max() <= 1.0

    def test_missing_mpp_names_the_slide(self, no_mpp_tiff: Path, backend: BackendName) -> None:
        with pytest.raises(MissingMpp) as err:
            open_slide(no_mpp_tiff, backend)
        assert no_mpp_tiff.name in str(err.value) and "--mpp" in str(err.value)

    def test_mpp_override(self, no_mpp_tiff: Path, backend: BackendName) -> None:
        with open_slide(no_mpp_tiff, backend, mpp=0.3) as r:
            assert (r.meta.mpp_x, r.meta.mpp_y, r.meta.mpp_source) == (0.3, 0.3, "override")

    def test_override_wins_over_recorded_mpp(self, cmu1_path: Path, backend: BackendName) -> None:
        with open_slide(cmu1_path, backend, mpp=0.25) as r:
            assert r.meta.mpp == 0.25 and r.meta.mpp_source == "override"

    @pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), float("inf"), 0.01, 25.0])
    def test_invalid_mpp_refused(self, no_mpp_tiff: Path, backend: BackendName, bad: float) -> None:
        with pytest.raises(InvalidMpp) as err:
            open_slide(no_mpp_tiff, backend, mpp=bad)
        assert no_mpp_tiff.name in str(err.value)

    def test_rgba_composited_onto_white(self, rgba_tiff: Path, backend: BackendName) -> None:
        with open_slide(rgba_tiff, backend) as r:
            region = r.read_region((0, 0), 0, (512, 512))
        assert region.shape == (512, 512, 3)
        np.testing.assert_array_equal(
            region[:, :256], np.broadcast_to([30, 60, 200], (512, 256, 3))
        )
        half = np.rint(np.array([30, 60, 200]) * 128 / 255 + 255 * 127 / 255)
        assert np.abs(region[:, 256:384].astype(float) - half).max() <= 1.0
        assert (region[:, 384:] == 255).all()  # transparent -> white, never black

    def test_associated_images_only_on_request(
        self, cmu1_path: Path, backend: BackendName, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[Any] = []
        if backend == "openslide":
            real = openslide.lowlevel.read_associated_image

            def counting(*args: Any) -> Any:
                calls.append(args)
                return real(*args)

            monkeypatch.setattr(openslide.lowlevel, "read_associated_image", counting)
        else:
            cls = tiffslide_module._LazyAssociatedImagesDict
            real_get = cls.__getitem__

            def counting_get(self: Any, key: str) -> Any:
                calls.append(key)
                return real_get(self, key)

            monkeypatch.setattr(cls, "__getitem__", counting_get)
        with open_slide(cmu1_path, backend) as r:
            r.read_region((0, 0), 0, (256, 256))
            read_at_mpp(r, (0, 0), (64, 64), 1.0)
            info_rows(r)
            assert calls == []
            label = r.associated_image("label")
            assert len(calls) == 1
            with pytest.raises(KeyError, match="CMU-1-Small-Region.svs"):
                r.associated_image("barcode")
        assert label.shape == (463, 387, 3) and label.dtype == np.uint8

    def test_pickles_by_reopening(self, cmu1: SlideReader) -> None:
        clone = pickle.loads(pickle.dumps(cmu1))
        try:
            assert clone.meta == cmu1.meta and type(clone) is type(cmu1)
            np.testing.assert_array_equal(
                clone.read_region((500, 500), 0, (32, 32)),
                cmu1.read_region((500, 500), 0, (32, 32)),
            )
        finally:
            clone.close()


@pytest.mark.parametrize(("location", "size"), CMU1_REGIONS)
def test_backends_give_the_same_cmu1_pixels(
    cmu1_path: Path, location: tuple[int, int], size: tuple[int, int]
) -> None:
    with open_slide(cmu1_path, "openslide") as a, open_slide(cmu1_path, "tiffslide") as b:
        pa, pb = a.read_region(location, 0, size), b.read_region(location, 0, size)
    assert pa.shape == pb.shape == (size[1], size[0], 3)
    assert np.abs(pa.astype(int) - pb.astype(int)).max() <= CROSS_BACKEND_MAX_DIFF


@pytest.mark.parametrize("level", [0, 1, 2])  # levels with whole-number downsamples
@pytest.mark.parametrize("location", [(0, 0), (96, 64), (1200, 1000), (-40, -40)])
def test_backends_agree_on_synthetic_levels(
    pyramid_tiff: Path, level: int, location: tuple[int, int]
) -> None:
    with open_slide(pyramid_tiff, "openslide") as a, open_slide(pyramid_tiff, "tiffslide") as b:
        assert a.meta.level_dimensions == b.meta.level_dimensions
        pa, pb = (
            a.read_region(location, level, (150, 120)),
            b.read_region(location, level, (150, 120)),
        )
    assert np.abs(pa.astype(int) - pb.astype(int)).max() <= CROSS_BACKEND_MAX_DIFF


def test_tiffslide_fast_tile_path_equals_tiffslide_generic_path(tmp_path: Path) -> None:
    """The direct tile decoder returns exactly what tiffslide's own read_region returns."""
    from cytoscreen.io.tiffslide_backend import TiffSlideReader
    from cytoscreen.synth.tiffwriter import write_array_tiff

    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, (700, 900, 3), dtype=np.uint8)
    path = tmp_path / "fast.tif"
    write_array_tiff(path, image, mpp=0.25, tile=128, min_size=200)
    fast = TiffSlideReader(path)
    slow = TiffSlideReader(path)
    assert all(t is not None for t in fast._tiled)
    slow._tiled = [None] * len(slow._tiled)  # force tiffslide's generic zarr path
    for _ in range(40):
        level = int(rng.integers(0, fast.meta.level_count))
        x, y = (int(v) for v in rng.integers(-150, 1000, 2))
        w, h = (int(v) for v in rng.integers(1, 400, 2))
        a = fast.read_region((x, y), level, (w, h))
        b = slow.read_region((x, y), level, (w, h))
        np.testing.assert_array_equal(a, b, err_msg=f"level {level} at {(x, y)} size {(w, h)}")
    fast.close()
    slow.close()
