"""DICOM whole-slide series (a folder per slide): the same pixels and mpp as the slide they were
made from, through every backend that opens DICOM, and clear errors for broken series."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cytoscreen.errors import MissingMpp, UnreadableSlide
from cytoscreen.io import SlideReader, info_rows, open_slide, read_at_mpp, slide_key
from cytoscreen.io.dicom import series_of
from cytoscreen.types import BackendName
from tests.dicom_fixtures import (
    PATIENT,
    convert,
    label_image,
    make_greyscale,
    missing_base,
    missing_part,
    overview_image,
    two_series,
    with_foreign_file,
    write_secondary_capture,
)

DICOM_BACKENDS: tuple[BackendName, ...] = ("wsidicom", "openslide")
# JPEG q90 against the lossless source, measured on the render_scene slide, levels 0-3: max
# 11, 20, 25, 32; 99.9th percentile 3, 4, 5, 14; mean 0.39-1.03. Between the two backends: 0
# (both decode with libjpeg-turbo).
JPEG_MAX_DIFF = 40
JPEG_P999_DIFF = 16
JPEG_MEAN_DIFF = 1.5


@pytest.fixture(scope="module")
def series_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dicom")


@pytest.fixture(scope="module")
def lossless(series_root: Path, pyramid_tiff: Path) -> dict[str, Path]:
    """The gradient pyramid (4 levels, 0.25 um/px) as uncompressed and JPEG 2000 lossless
    series, level 0 of the JPEG 2000 one split into a 2-part concatenation."""
    return {
        "none": convert(pyramid_tiff, series_root / "none", compression="none"),
        "jpeg2k": convert(pyramid_tiff, series_root / "j2k", compression="jpeg2k", base_parts=2),
    }


@pytest.fixture(scope="module")
def scene_tiff(render_scene: Callable[..., np.ndarray], write_slide: Callable[..., Path]) -> Path:
    image = render_scene(325.0, 275.0, 0.25, seed=5)  # 1300 x 1100 px
    return write_slide(image, mpp=0.25, compression="zlib", min_size=200, name="scene.tif")


@pytest.fixture(scope="module")
def jpeg_series(series_root: Path, scene_tiff: Path) -> Path:
    return convert(scene_tiff, series_root / "jpeg", compression="jpeg", quality=90)


@pytest.fixture(params=DICOM_BACKENDS)
def backend(request: pytest.FixtureRequest) -> BackendName:
    value: BackendName = request.param
    return value


@pytest.fixture(params=["none", "jpeg2k"])
def dicom(
    request: pytest.FixtureRequest, lossless: dict[str, Path], backend: BackendName
) -> Iterator[SlideReader]:
    with open_slide(lossless[request.param], backend) as reader:
        yield reader


def _whole_levels(reader: SlideReader) -> list[npt.NDArray[np.uint8]]:
    return [
        reader.read_region((0, 0), level, reader.meta.level_dimensions[level])
        for level in range(reader.meta.level_count)
    ]


class TestSameSlideAsTheSource:
    def test_pyramid_and_mpp_match_the_tiff(
        self, dicom: SlideReader, pyramid_tiff: Path, backend: BackendName
    ) -> None:
        with open_slide(pyramid_tiff, "openslide") as tiff:
            want = tiff.meta
        m = dicom.meta
        assert m.backend == backend and m.vendor == "dicom"
        assert m.level_dimensions == want.level_dimensions
        assert m.level_downsamples == pytest.approx(want.level_downsamples, rel=1e-6)
        assert (m.mpp_x, m.mpp_y) == pytest.approx((0.25, 0.25))
        assert m.mpp_source == "slide"
        assert m.objective_power == pytest.approx(40.0)

    def test_every_level_is_pixel_exact(self, dicom: SlideReader, pyramid_tiff: Path) -> None:
        with open_slide(pyramid_tiff, "tiffslide") as tiff:
            want = _whole_levels(tiff)
        for level, (got, ref) in enumerate(zip(_whole_levels(dicom), want, strict=True)):
            assert got.shape == ref.shape and got.dtype == np.uint8
            assert np.array_equal(got, ref), f"level {level}"

    def test_regions_off_the_edges_are_white_and_agree_with_the_tiff(
        self, dicom: SlideReader, pyramid_tiff: Path, backend: BackendName
    ) -> None:
        # OpenSlide paints a level whose downsample is not whole (level 3: 7.97) at the
        # fractional place; wsidicom, like tiffslide, truncates to the level's pixel grid
        rng = np.random.default_rng(0)
        same_rule: BackendName = "openslide" if backend == "openslide" else "tiffslide"
        with open_slide(pyramid_tiff, same_rule) as tiff:
            for _ in range(25):
                level = int(rng.integers(0, dicom.meta.level_count))
                loc = (int(rng.integers(-300, 1400)), int(rng.integers(-300, 1200)))
                size = (int(rng.integers(1, 400)), int(rng.integers(1, 400)))
                got = dicom.read_region(loc, level, size)
                assert np.array_equal(got, tiff.read_region(loc, level, size)), (level, loc)
        outside = dicom.read_region((5000, 5000), 0, (10, 10))
        assert (outside == 255).all()

    def test_patches_at_a_target_mpp_match(
        self, dicom: SlideReader, pyramid_tiff: Path, backend: BackendName
    ) -> None:
        # an odd level-0 place falls between level-1 pixels: same placement rule as above
        same_rule: BackendName = "openslide" if backend == "openslide" else "tiffslide"
        with open_slide(pyramid_tiff, same_rule) as tiff:
            for loc in ((0, 0), (333, 517), (1200, 1000)):
                want = read_at_mpp(tiff, loc, (64, 64), 0.5)
                assert np.array_equal(read_at_mpp(dicom, loc, (64, 64), 0.5), want)

    def test_jpeg_is_within_jpeg_tolerance_and_backends_agree(
        self, jpeg_series: Path, scene_tiff: Path
    ) -> None:
        with open_slide(scene_tiff, "tiffslide") as tiff:
            want = _whole_levels(tiff)
        decoded = {}
        for backend in DICOM_BACKENDS:
            with open_slide(jpeg_series, backend) as reader:
                assert reader.meta.mpp == pytest.approx(0.25)
                decoded[backend] = _whole_levels(reader)
            for got, ref in zip(decoded[backend], want, strict=True):
                diff = np.abs(got.astype(np.int16) - ref)
                assert diff.max() <= JPEG_MAX_DIFF and diff.mean() <= JPEG_MEAN_DIFF
                assert np.percentile(diff, 99.9) <= JPEG_P999_DIFF
        for a, b in zip(*decoded.values(), strict=True):
            assert np.array_equal(a, b)


class TestOpening:
    def test_auto_picks_wsidicom(self, lossless: dict[str, Path]) -> None:
        with open_slide(lossless["none"]) as reader:
            assert reader.meta.backend == "wsidicom"

    def test_one_file_of_the_series_opens_the_slide(
        self, lossless: dict[str, Path], backend: BackendName
    ) -> None:
        folder = lossless["none"]
        with open_slide(folder / "level-2.dcm", backend) as one, open_slide(folder) as whole:
            assert one.meta.level_dimensions == whole.meta.level_dimensions
            assert np.array_equal(
                one.read_region((100, 100), 0, (50, 50)),
                whole.read_region((100, 100), 0, (50, 50)),
            )

    def test_associated_images_are_listed_and_read_only_on_request(
        self, dicom: SlideReader
    ) -> None:
        assert set(dicom.associated_names()) == {"label", "macro"}
        assert np.array_equal(dicom.associated_image("label"), label_image())
        assert np.array_equal(dicom.associated_image("macro"), overview_image())
        with pytest.raises(KeyError, match="label, macro"):
            dicom.associated_image("thumbnail")

    def test_info_shows_no_patient_data(self, dicom: SlideReader) -> None:
        rows = dict(info_rows(dicom))
        assert rows["vendor"] == "dicom" and rows["levels"] == "4"
        text = " ".join(f"{k} {v}" for k, v in info_rows(dicom))
        assert "Synthetic" not in text and "SYNTH" not in text and PATIENT not in text

    def test_reader_pickles_by_path(self, dicom: SlideReader) -> None:
        copy = pickle.loads(pickle.dumps(dicom))
        try:
            assert copy.meta == dicom.meta
            assert np.array_equal(
                copy.read_region((10, 20), 1, (30, 30)), dicom.read_region((10, 20), 1, (30, 30))
            )
        finally:
            copy.close()

    def test_no_pixel_spacing_needs_mpp_and_then_opens(
        self, series_root: Path, pyramid_tiff: Path
    ) -> None:
        folder = convert(pyramid_tiff, series_root / "nompp", mpp=None)
        with pytest.raises(MissingMpp, match="nompp"):
            open_slide(folder)
        with open_slide(folder, mpp=0.3) as reader:  # wsidicom needs a spacing: OpenSlide reads
            assert reader.meta.backend == "openslide"
            assert reader.meta.mpp == pytest.approx(0.3) and reader.meta.mpp_source == "override"

    def test_tiffslide_refuses_dicom_and_wsidicom_refuses_tiff(
        self, lossless: dict[str, Path], pyramid_tiff: Path
    ) -> None:
        with pytest.raises(UnreadableSlide, match="tiffslide does not read DICOM"):
            open_slide(lossless["none"], "tiffslide")
        with pytest.raises(UnreadableSlide, match="wsidicom reads DICOM series only"):
            open_slide(pyramid_tiff, "wsidicom")

    def test_a_folder_without_dicom_files_is_not_a_slide(self, tmp_path: Path) -> None:
        with pytest.raises(UnreadableSlide, match="no DICOM"):
            open_slide(tmp_path)


class TestBrokenSeries:
    """Each refused with the file (or folder) at fault named, by every backend."""

    def test_two_series_in_one_folder(
        self, series_root: Path, pyramid_tiff: Path, backend: BackendName
    ) -> None:
        folder = series_root / "two"
        if not folder.exists():
            two_series(pyramid_tiff, folder)
        with pytest.raises(UnreadableSlide, match="holds 2 DICOM series") as err:
            open_slide(folder, backend)
        assert str(folder) in str(err.value)
        assert "a-label.dcm" in str(err.value) and "b-label.dcm" in str(err.value)

    def test_missing_part_of_a_concatenation(
        self, series_root: Path, pyramid_tiff: Path, backend: BackendName
    ) -> None:
        folder = series_root / "part"
        if not folder.exists():
            missing_part(pyramid_tiff, folder)
        with pytest.raises(UnreadableSlide, match=r"part\(s\) 2 of 3 .* missing") as err:
            open_slide(folder, backend)
        assert str(folder) in str(err.value) and "level-0-1.dcm" in str(err.value)

    def test_missing_full_resolution_level(
        self, series_root: Path, pyramid_tiff: Path, backend: BackendName
    ) -> None:
        folder = series_root / "base"
        if not folder.exists():
            missing_base(pyramid_tiff, folder)
        with pytest.raises(UnreadableSlide, match="full-resolution level is missing"):
            open_slide(folder, backend)

    def test_a_dicom_object_that_is_no_slide(
        self, series_root: Path, pyramid_tiff: Path, backend: BackendName
    ) -> None:
        folder = series_root / "foreign"
        if not folder.exists():
            with_foreign_file(pyramid_tiff, folder)
        with pytest.raises(UnreadableSlide, match="Secondary Capture .* not a VL Whole") as err:
            open_slide(folder, backend)
        assert str(folder / "scan.dcm") in str(err.value)
        alone = write_secondary_capture(series_root / "alone" / "ct.dcm")
        with pytest.raises(UnreadableSlide, match="not a VL Whole Slide"):
            open_slide(alone.parent, backend)

    def test_a_dcm_file_that_is_not_dicom(
        self, series_root: Path, lossless: dict[str, Path], backend: BackendName
    ) -> None:
        folder = series_root / "junk"
        if not folder.exists():
            shutil.copytree(lossless["none"], folder)
            (folder / "notes.dcm").write_bytes(b"not dicom at all" * 20)
        with pytest.raises(UnreadableSlide, match="not a DICOM file") as err:
            open_slide(folder, backend)
        assert str(folder / "notes.dcm") in str(err.value)

    def test_greyscale_pixels_are_refused(
        self, series_root: Path, pyramid_tiff: Path, backend: BackendName
    ) -> None:
        folder = series_root / "grey"
        if not folder.exists():
            convert(pyramid_tiff, folder)
            make_greyscale(folder)
        with pytest.raises(UnreadableSlide, match="MONOCHROME2 .* not RGB colour") as err:
            open_slide(folder, backend)
        assert str(folder / "level-0.dcm") in str(err.value)


class TestSlideKey:
    def test_the_series_is_keyed_by_content(
        self, series_root: Path, lossless: dict[str, Path]
    ) -> None:
        folder = lossless["none"]
        key = slide_key(folder)
        assert slide_key(folder / "level-1.dcm") == key  # any file of it names the slide
        moved = series_root / "renamed-copy"
        shutil.copytree(folder, moved)
        for i, f in enumerate(sorted(moved.glob("*.dcm"))):
            f.rename(moved / f"x{i}.dcm")
        assert slide_key(moved) == key
        assert slide_key(lossless["jpeg2k"]) != key
        assert slide_key(folder, mpp_override=0.3) != key
        series = series_of(moved)
        assert len(series.files) == 6 and series.base.width == 1300
