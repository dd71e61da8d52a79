"""Issue 7, cases 5 and 7: transparent, 16-bit, greyscale and CMYK slides, and a header that
claims a 1,000,000 x 1,000,000 px image in a file of a few kilobytes.

Transparent pixels are composited onto white, so transparent glass is never foreground. Pixel
formats other than 8-bit RGB(A) are refused naming the slide (the rule in docs/usage.md, "Input
formats"), and an impossible size is refused before anything proportional to it is allocated."""

from __future__ import annotations

import resource
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from cytoscreen.config import ForegroundConfig
from cytoscreen.errors import UnreadableSlide
from cytoscreen.io import open_slide
from cytoscreen.tiling.foreground import slide_foreground

MPP = 0.25
RESOLUTION: dict[str, Any] = {
    "resolution": (1e4 / MPP, 1e4 / MPP),
    "resolutionunit": "CENTIMETER",
}


def _write(path: Path, pixels: np.ndarray, **options: Any) -> Path:
    tifffile.imwrite(path, pixels, tile=(256, 256), **RESOLUTION, **options)
    return path


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory, make_slide: Any) -> np.ndarray:
    """A 1024 x 2048 RGB view: stained cells on the left half, empty glass on the right."""
    src = make_slide(tmp_path_factory.mktemp("cells") / "src.tiff", size=1024, seed=5)
    left = tifffile.imread(src, key=0)[:1024, :1024]
    out = np.full((1024, 2048, 3), 255, np.uint8)
    out[:, :1024] = left
    return out


def _mask(path: Path, backend: str) -> np.ndarray:
    with open_slide(path, backend=backend) as reader:  # type: ignore[arg-type]
        return slide_foreground(reader, ForegroundConfig()).mask


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
@pytest.mark.parametrize("alpha", ["straight", "premultiplied"])
def test_transparent_glass_is_white_not_foreground(
    tmp_path: Path, cells: np.ndarray, backend: str, alpha: str
) -> None:
    glass = np.all(cells > 225, axis=2)
    rgba = np.zeros((*cells.shape[:2], 4), np.uint8)
    rgba[..., 3] = np.where(glass, 0, 255)  # glass fully transparent...
    rgba[..., :3] = np.where(glass[..., None], 0, cells)  # ...and black underneath
    extra = 2 if alpha == "straight" else 1  # TIFF ExtraSamples: unassociated / associated
    rgba_path = _write(tmp_path / "rgba.tiff", rgba, photometric="rgb", extrasamples=[extra])
    rgb_path = _write(tmp_path / "rgb.tiff", cells, photometric="rgb")

    with open_slide(rgba_path, backend=backend) as reader:  # type: ignore[arg-type]
        region = reader.read_region((1100, 100), 0, (256, 256))  # transparent glass only
    assert np.all(region == 255)
    got, want = _mask(rgba_path, backend), _mask(rgb_path, backend)
    half = got.shape[1] // 2
    assert not got[:, half + 2 :].any()  # no foreground on the transparent glass
    assert got[:, :half].mean() > 0.05  # the cells are foreground (not the glass)
    assert (got == want).mean() > 0.98  # the same mask as the opaque slide


REFUSED: dict[str, tuple[np.ndarray, dict[str, Any], str]] = {
    "rgb16.tiff": (np.full((512, 512, 3), 30000, np.uint16), {"photometric": "rgb"}, "16-bit"),
    "grey8.tiff": (np.full((512, 512), 200, np.uint8), {"photometric": "minisblack"}, "greyscale"),
    "grey16.tiff": (np.full((512, 512), 900, np.uint16), {"photometric": "minisblack"}, "grey"),
    "cmyk.tiff": (np.full((512, 512, 4), 40, np.uint8), {"photometric": "separated"}, "CMYK"),
    "float.tiff": (np.full((512, 512, 3), 0.5, np.float32), {"photometric": "rgb"}, "floating"),
}


@pytest.mark.parametrize("backend", ["auto", "openslide", "tiffslide"])
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_other_pixel_formats_are_refused_naming_the_slide(
    tmp_path: Path, name: str, backend: str
) -> None:
    pixels, options, says = REFUSED[name]
    path = _write(tmp_path / name, pixels, **options)
    with pytest.raises(UnreadableSlide) as err:
        open_slide(path, backend=backend)  # type: ignore[arg-type]
    assert str(path) in str(err.value) and says in str(err.value)
    assert "8-bit RGB" in err.value.hint


def _claim_size(src: Path, dst: Path, width: int, height: int) -> Path:
    """Copy ``src`` with level 0's ImageWidth/ImageLength tags rewritten in place."""
    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tf:
        page = tf.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        tags = page.tags
        for code, value in ((256, width), (257, height)):
            tag = tags[code]
            fmt = {3: "<H", 4: "<I"}[int(tag.dtype)]
            struct.pack_into(fmt, data, tag.valueoffset, value)
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("huge")
    small = _write(
        root / "small.tiff",
        np.full((512, 512, 3), 235, np.uint8),
        photometric="rgb",
        compression="jpeg",
    )
    return _claim_size(small, root / "huge.svs", 1_000_000, 1_000_000)


LIMITED = """
import resource, sys
limit = int(sys.argv[1]) << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from cytoscreen.io import open_slide
try:
    open_slide(sys.argv[2], mpp=float(sys.argv[3]) if len(sys.argv) > 3 else None)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize("mpp", [None, "0.1"])
def test_huge_header_refused_under_a_memory_limit(huge: Path, mpp: str | None) -> None:
    assert huge.stat().st_size < 20_000
    args = [sys.executable, "-c", LIMITED, "768", str(huge), *([mpp] if mpp else [])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # no MemoryError, no crash
    assert done.stdout.startswith("UnreadableSlide"), done.stdout + done.stderr
    assert str(huge) in done.stdout and "1,000,000 x 1,000,000" in done.stdout


def test_bad_formats_fail_alone_in_a_screen_with_bounded_memory(
    tmp_path: Path,
    huge: Path,
    good_slide: Path,
    model_dir: Path,
    config_path: Path,
    summary_rows: Any,
) -> None:
    """The whole screen (own process: peak RSS measured) refuses the huge and the CMYK slide,
    screens the good one and exits 1."""
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(huge, root / "huge.svs")
    cmyk, options, _ = REFUSED["cmyk.tiff"]
    _write(root / "cmyk.tiff", cmyk, **options)
    shutil.copy(good_slide, root / "good.tiff")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-c",
        "from cytoscreen.cli import app; app()",
        "screen",
        str(root),
        "--out",
        str(out),
    ]
    cmd += ["--model", str(model_dir), "--config", str(config_path)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert done.returncode == 1, done.stdout + done.stderr
    rows = {Path(k).name: r for k, r in summary_rows(out).items()}
    assert rows["good.tiff"]["status"] == "ok"
    assert (
        rows["huge.svs"]["status"] == "failed"
        and "larger than any glass slide" in (rows["huge.svs"]["error"])
    )
    assert rows["cmyk.tiff"]["status"] == "failed" and "CMYK" in rows["cmyk.tiff"]["error"]
    # a 1e6 x 1e6 slide's 8 um/px mask alone would be 2.9 GB; only growth past what earlier
    # children already reached shows in the running maximum
    assert peak_mib < 1500 or before / 1024 >= 1500, peak_mib
