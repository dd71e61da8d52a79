"""Issue 7, privacy: nothing the tool writes carries vendor metadata that can identify a
patient, and the results and cache folders are private and refuse planted symlinks."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cytoscreen.synth.tiffwriter import write_pyramidal_tiff

SECRET = "Doe^Jane MRN-4417-SECRET"


@pytest.fixture(scope="module")
def identified_slide(tmp_path_factory: pytest.TempPathFactory, good_slide: Path) -> Path:
    """The good slide's pixels, rewritten with an Aperio-style description that holds a fake
    patient name, barcode and scanner file name."""
    import tifffile

    with tifffile.TiffFile(good_slide) as tf:
        image = tf.pages[0].asarray()
    h, w = image.shape[:2]
    path = tmp_path_factory.mktemp("phi") / "case.svs"
    write_pyramidal_tiff(
        path,
        w,
        h,
        lambda level, x, y, ww, hh: np.asarray(
            image[:: 2**level, :: 2**level][y : y + hh, x : x + ww]
        ),
        mpp=0.25,
        description=(
            f"Aperio Image Library v12.0.5\r\n{w}x{h} [0,0 {w}x{h}] (256x256) JPEG/RGB Q=85"
            f"|AppMag = 40|MPP = 0.25|Patient = {SECRET}|Barcode = {SECRET}"
            f"|Filename = {SECRET}.svs|User = {SECRET}"
        ),
    )
    return path


def test_no_output_file_contains_vendor_identity(
    tmp_path: Path, identified_slide: Path, run_screen: Any
) -> None:
    from cytoscreen.io import open_slide

    with open_slide(identified_slide) as reader:  # the name really is in the file's metadata
        assert reader.meta.mpp == pytest.approx(0.25)
    assert SECRET.encode() in identified_slide.read_bytes()
    out = tmp_path / "out"
    result = run_screen([identified_slide], out)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "result.json" for p in files) and any(p.suffix == ".png" for p in files)
    leaks = [p for p in files if SECRET.encode() in p.read_bytes()]
    assert leaks == []


def test_results_and_cache_folders_are_private(
    tmp_path: Path, good_slide: Path, run_screen: Any
) -> None:
    out = tmp_path / "out"
    assert run_screen([good_slide], out).exit_code == 0
    for folder in (out, out / "cache", out / "slides"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_symlink_planted_in_the_results_folder_is_not_followed(
    tmp_path: Path, good_slide: Path, run_screen: Any
) -> None:
    out = tmp_path / "out"
    assert run_screen([good_slide], out).exit_code == 0
    (slide_out,) = (out / "slides").iterdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = slide_out / "fields.csv"
    target.unlink()
    target.symlink_to(victim)
    (slide_out / "result.json").unlink()  # force the slide to be redone
    run_screen([good_slide], out)
    assert victim.read_text() == "precious"
    assert not os.path.islink(target) or victim.read_text() == "precious"


@pytest.mark.parametrize("planted", ["cache", "slides", "slide"])
def test_a_symlink_planted_for_a_folder_is_refused(
    tmp_path: Path, good_slide: Path, run_screen: Any, planted: str
) -> None:
    from cytoscreen.batch import find_slides

    decoy = tmp_path / "decoy"
    decoy.mkdir()
    out = tmp_path / "out"
    (out / "slides").mkdir(parents=True)
    link = {
        "cache": out / "cache",
        "slides": out / "slides",
        "slide": out / "slides" / find_slides([good_slide])[0].id,
    }[planted]
    if planted == "slides":
        (out / "slides").rmdir()
    link.symlink_to(decoy)
    result = run_screen([good_slide], out)
    assert result.exit_code != 0
    assert "symbolic link" in result.output and link.name in result.output
    assert list(decoy.iterdir()) == []
