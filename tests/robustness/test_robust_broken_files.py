"""Issue 7, cases 1-3: empty and non-slide files, truncated TIFFs, native reader crashes and a
corrupted JPEG tile. Each fails (or degrades) alone, with an error naming the file; the rest of
the batch is screened and the exit code says something failed."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import tifffile

HERE = Path(__file__).parent
ScreenFn = Any


def _truncate(src: Path, dst: Path, at: int) -> Path:
    dst.write_bytes(src.read_bytes()[:at])
    return dst


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as fh:
        return {Path(r["path"]).name: r for r in csv.DictReader(fh)}


def _result(out: Path, name: str) -> dict[str, Any]:
    for p in (out / "slides").glob("*/result.json"):
        r = json.loads(p.read_text(encoding="utf-8"))
        if Path(r["path"]).name == name:
            return r
    raise AssertionError(f"no result for {name}")


@pytest.fixture(scope="module")
def broken_run(
    tmp_path_factory: pytest.TempPathFactory, good_slide: Path, run_screen: ScreenFn
) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("broken")
    (root / "empty.svs").write_bytes(b"")
    (root / "text.svs").write_text("Patient: nobody\nthis is a text file\n" * 40)
    (root / "image.svs").write_bytes(imagecodecs.png_encode(np.zeros((64, 64, 3), np.uint8)))
    with tifffile.TiffFile(good_slide) as tf:
        page0 = tf.pages[0]
        mid_tile = int(page0.dataoffsets[len(page0.dataoffsets) // 2])
        second_ifd = int(tf.pages[1].offset)
    _truncate(good_slide, root / "cut_in_tiles.svs", mid_tile + 100)
    _truncate(good_slide, root / "cut_at_directory.svs", second_ifd + 6)
    _truncate(good_slide, root / "cut_in_header.svs", 10)
    shutil.copy(good_slide, root / "good.tiff")
    return root, run_screen([root], tmp_path_factory.mktemp("out"))


def test_batch_continues_and_exit_code_is_nonzero(broken_run: tuple[Path, Any]) -> None:
    root, result = broken_run
    assert result.exit_code == 1, result.output
    rows = _rows(_out(result))
    assert set(rows) == {p.name for p in root.iterdir()}
    assert rows["good.tiff"]["status"] == "ok"
    assert rows["good.tiff"]["outcome"] in ("negative", "review")


def _out(result: Any) -> Path:
    # the CLI prints "results: <out>/summary.csv" last
    line = [x for x in result.output.splitlines() if x.startswith("results:")][-1]
    return Path(line.split(":", 1)[1].strip()).parent


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("empty.svs", "empty"),
        ("text.svs", "not a readable whole-slide image"),
        ("image.svs", "not a readable whole-slide image"),
        ("cut_in_header.svs", "not a readable whole-slide image"),
    ],
)
def test_not_a_slide_fails_with_a_clear_error(
    broken_run: tuple[Path, Any], name: str, says: str
) -> None:
    row = _rows(_out(broken_run[1]))[name]
    assert row["status"] == "failed"
    assert str(broken_run[0] / name) in row["error"]  # names the file
    assert says in row["error"]
    assert " -- " in row["error"]  # and says what to do


@pytest.mark.parametrize("name", ["cut_in_tiles.svs", "cut_at_directory.svs"])
def test_truncated_tiff_never_passes_as_a_decided_slide(
    broken_run: tuple[Path, Any], name: str
) -> None:
    """A truncated file either fails naming the slide, or (when its header survived) has its
    missing tiles recorded as unreadable, which makes it not assessable."""
    r = _result(_out(broken_run[1]), name)
    if r["status"] == "failed":
        assert name in r["error"] and " -- " in r["error"]
    else:
        assert r["outcome"] == "not_assessable", r
        assert r["counts"]["n_unreadable"] > 0


@pytest.mark.parametrize("crash", ["segfault", "abort"])
def test_native_crash_in_the_reader_fails_only_that_slide(
    tmp_path: Path,
    good_slide: Path,
    run_screen: ScreenFn,
    monkeypatch: pytest.MonkeyPatch,
    crash: str,
) -> None:
    monkeypatch.syspath_prepend(str(HERE))  # so the tiling child can import the helper
    import robust_crash_helper

    import cytoscreen.stages

    monkeypatch.setattr(cytoscreen.stages, "tile_slide", robust_crash_helper.tile_or_crash)
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(good_slide, root / f"{crash}.tiff")
    shutil.copy(good_slide, root / "fine.tiff")
    result = run_screen([root], tmp_path / "out")
    assert result.exit_code == 1, result.output
    rows = _rows(tmp_path / "out")
    assert rows["fine.tiff"]["status"] == "ok"
    bad = rows[f"{crash}.tiff"]
    assert bad["status"] == "failed"
    assert str(root / f"{crash}.tiff") in bad["error"]
    assert ("SIGSEGV" if crash == "segfault" else "SIGABRT") in bad["error"]
    assert "robust_crash_helper" in sys.modules  # the patched step really ran


def _corrupt_one_tile(src: Path, dst: Path, level: int) -> tuple[int, int]:
    """Copy ``src`` with tile 0 of ``level`` replaced by garbage of the same length; returns
    the level's (tile width, tile height)."""
    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tf:
        page = tf.pages[level]
        off, n = int(page.dataoffsets[0]), int(page.databytecounts[0])
        tile = (int(page.tilewidth), int(page.tilelength))  # type: ignore[union-attr]
    rng = np.random.default_rng(0)
    data[off + 2 : off + n] = rng.integers(0, 256, n - 2, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return tile


@pytest.fixture(scope="module")
def corrupt_slide(tmp_path_factory: pytest.TempPathFactory, make_slide: Any) -> tuple[Path, Path]:
    """A 1536 px slide (levels 1536, 768, 384) whose level 1 (0.5 um/px: the level the
    patches are read from) has one garbage JPEG tile; the thumbnail level is intact."""
    root = tmp_path_factory.mktemp("corrupt")
    clean = make_slide(root / "clean" / "slide.tiff", size=1536, seed=5)
    (root / "bad").mkdir()
    _corrupt_one_tile(clean, root / "bad" / "slide.tiff", level=1)
    return clean, root / "bad" / "slide.tiff"


def _store(result: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from cytoscreen.tiling import PatchStore

    store = PatchStore.open(result["cache"])
    prob = store.read_scores(result["model_id"], complete_only=False)
    return store.coords, store.valid, prob


def test_corrupt_tile_marks_only_its_patches_unreadable(
    tmp_path: Path, corrupt_slide: tuple[Path, Path], run_screen: ScreenFn, write_config: Any
) -> None:
    clean, bad = corrupt_slide
    # a lenient limit: the slide is still decided, and only the damaged tile's patches are lost;
    # a read block (16 x 16 patches = 1024 level-0 px) spans four level-1 tiles
    cfg = write_config(
        tmp_path / "c.yaml",
        triage={"max_unreadable_share": 0.5},
        tiling={"block_patches": 16},
    )
    assert run_screen([clean], tmp_path / "a", config=cfg).exit_code == 0
    assert run_screen([bad], tmp_path / "b", config=cfg).exit_code == 0
    ra, rb = _result(tmp_path / "a", "slide.tiff"), _result(tmp_path / "b", "slide.tiff")
    ca, va, pa = _store(ra)
    cb, vb, pb = _store(rb)
    assert np.array_equal(ca, cb) and va.all()
    # level 1 has downsample 2: its tile 0 covers level-0 [0, 512) x [0, 512); 32 px patches at
    # 0.5 um/px are 64 level-0 px
    inside = (cb[:, 0] + 64 <= 512) & (cb[:, 1] + 64 <= 512)
    touching = (cb[:, 0] < 512) & (cb[:, 1] < 512)
    assert inside.any()
    assert not vb[inside].any()  # never scored as if real
    assert np.isnan(pb[~vb]).all()
    assert vb[~touching].all()  # per patch: the rest of each damaged block is kept
    assert np.allclose(pb[~touching], pa[~touching], atol=1e-5)
    assert rb["counts"]["n_unreadable"] == int((~vb).sum()) > 0
    assert rb["outcome"] in ("negative", "review")


def test_corrupt_tile_above_the_unreadable_limit_is_not_assessable(
    tmp_path: Path, corrupt_slide: tuple[Path, Path], run_screen: ScreenFn, write_config: Any
) -> None:
    cfg = write_config(tmp_path / "c.yaml", triage={"max_unreadable_share": 0.01})
    result = run_screen([corrupt_slide[1]], tmp_path / "o", config=cfg)
    assert result.exit_code == 0, result.output  # decided, just not assessable: not a failure
    r = _result(tmp_path / "o", "slide.tiff")
    assert r["outcome"] == "not_assessable"
    assert any("unreadable" in reason for reason in r["reasons"])
    assert r["score"] is not None or r["outcome"] != "negative"
