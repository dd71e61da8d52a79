"""open_slide: backend choice and errors that name the file and say what to do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cytoscreen.errors import MissingMpp, UnreadableSlide
from cytoscreen.io import OpenSlideReader, TiffSlideReader, info_rows, open_slide
from cytoscreen.io.opener import BackendChoice


def test_auto_prefers_openslide_for_vendor_files(cmu1_path: Path) -> None:
    with open_slide(cmu1_path) as r:
        assert isinstance(r, OpenSlideReader) and r.meta.vendor == "aperio"


@pytest.mark.parametrize("compression", [None, "jpeg2000"])
def test_auto_falls_back_to_tiffslide(tmp_path: Path, compression: str | None) -> None:
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    path = tmp_path / "plain.tif"
    tile = (256, 256) if compression else None  # None: a stripped TIFF OpenSlide refuses
    tifffile.imwrite(
        path,
        image,
        photometric="rgb",
        tile=tile,
        compression=compression,
        resolution=(1e4 / 0.5, 1e4 / 0.5),
        resolutionunit="CENTIMETER",
    )
    with pytest.raises(UnreadableSlide):
        open_slide(path, "openslide")
    with open_slide(path) as r:
        assert isinstance(r, TiffSlideReader)
        assert r.meta.mpp == pytest.approx(0.5) and r.meta.dimensions == (400, 300)
        got = r.read_region((0, 0), 0, (400, 300))
    assert np.abs(got.astype(int) - image).max() <= 1  # both encodings are lossless here


def _missing(d: Path) -> Path:
    return d / "missing.svs"


def _zero_byte(d: Path) -> Path:
    (d / "empty.svs").touch()
    return d / "empty.svs"


def _renamed_png(d: Path) -> Path:
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "picture.svs", format="PNG")
    return d / "picture.svs"


def _text(d: Path) -> Path:
    (d / "notes.svs").write_text("not a slide\n")
    return d / "notes.svs"


@pytest.mark.parametrize("backend", ["auto", "openslide", "tiffslide"])
@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_missing, "no such file"),
        (_zero_byte, "empty (0 bytes)"),
        (_renamed_png, "cannot open it"),
        (_text, "cannot open it"),
    ],
    ids=["missing", "zero-byte", "renamed-png", "text"],
)
def test_unreadable_files_are_named(
    tmp_path: Path, make: Callable[[Path], Path], words: str, backend: BackendChoice
) -> None:
    path = make(tmp_path)
    with pytest.raises(UnreadableSlide) as err:
        open_slide(path, backend)
    text = str(err.value)
    assert text.startswith(f"{path}: ")  # names the file
    if backend == "auto" and words == "cannot open it":
        words = "not a readable whole-slide image"
    assert words in text
    assert " -- " in text and err.value.hint  # and says what to do


def test_unknown_backend(cmu1_path: Path) -> None:
    with pytest.raises(ValueError, match="auto, openslide, tiffslide or wsidicom"):
        open_slide(cmu1_path, "bioformats")  # type: ignore[arg-type]


def test_read_errors_name_the_slide(cmu1_path: Path) -> None:
    with open_slide(cmu1_path) as r, pytest.raises(ValueError, match="CMU-1.*level 3"):
        r.read_region((0, 0), 3, (10, 10))


def test_info_rows_is_an_allow_list(cmu1_path: Path) -> None:
    with open_slide(cmu1_path) as r:
        rows = info_rows(r)
    table = dict(rows)
    assert list(table) == [
        "file",
        "backend",
        "vendor",
        "dimensions",
        "levels",
        "level 0",
        "mpp x",
        "mpp y",
        "mpp source",
        "objective power",
    ]
    assert table["file"] == "CMU-1-Small-Region.svs"
    assert table["level 0"] == "2220 x 2967 px, downsample 1, 0.499 um/px"
    assert table["objective power"] == "20x" and table["mpp source"] == "slide"
    text = " ".join(v for _, v in rows)
    # identity-bearing vendor fields of this slide must not leak (user id, scan date, scanner id)
    for secret in ("b414003d", "12/29/09", "CPAPERIOCS", "ScanScope"):
        assert secret not in text


def test_info_rows_per_level(pyramid_tiff: Path) -> None:
    with open_slide(pyramid_tiff, mpp=0.3) as r:
        table = dict(info_rows(r))
    assert table["levels"] == "4"
    assert table["level 1"] == "650 x 550 px, downsample 2, 0.6 um/px"
    assert table["mpp source"] == "override" and table["objective power"] == "unknown"


def _write_ome(path: Path, image: np.ndarray, *, physical_size: float | None) -> Path:
    """OME-TIFF with its pyramid in SubIFDs; mpp only in the OME-XML (no resolution tags)."""
    metadata: dict[str, object] = {"axes": "YXS"}
    if physical_size is not None:
        metadata.update(PhysicalSizeX=physical_size, PhysicalSizeY=physical_size)
    with tifffile.TiffWriter(path, ome=True) as tw:
        kw: dict[str, object] = {"tile": (256, 256), "photometric": "rgb", "compression": "zlib"}
        tw.write(image, subifds=2, metadata=metadata, **kw)  # type: ignore[arg-type]
        tw.write(image[::2, ::2], subfiletype=1, **kw)  # type: ignore[arg-type]
        tw.write(image[::4, ::4], subfiletype=1, **kw)  # type: ignore[arg-type]
    return path


def test_auto_reads_ome_tiff_pyramids_with_tiffslide(tmp_path: Path) -> None:
    image = np.random.default_rng(1).integers(0, 256, (1024, 768, 3), dtype=np.uint8)
    path = _write_ome(tmp_path / "x.ome.tif", image, physical_size=0.5)
    with open_slide(path, "openslide", mpp=0.5) as r:
        assert r.meta.level_count == 1  # OpenSlide does not see the SubIFD levels
    with open_slide(path) as r:
        assert isinstance(r, TiffSlideReader)
        assert r.meta.level_dimensions == ((768, 1024), (384, 512), (192, 256))
        assert r.meta.mpp == pytest.approx(0.5) and r.meta.mpp_source == "slide"
        np.testing.assert_array_equal(
            r.read_region((8, 16), 2, (20, 10)), image[::4, ::4][4:14, 2:22]
        )


def test_auto_missing_mpp_on_ome_tiff(tmp_path: Path) -> None:
    image = np.zeros((512, 512, 3), np.uint8)
    path = _write_ome(tmp_path / "nompp.ome.tif", image, physical_size=None)
    with pytest.raises(MissingMpp, match="nompp.ome.tif"):
        open_slide(path)
