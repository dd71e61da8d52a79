"""The Zarr patch cache: layout, pixels, reuse, rebuild, resume after SIGKILL, schedulers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import zarr

from cytoscreen.config import TILING_SECTIONS, Config, load_config
from cytoscreen.errors import CacheMismatch
from cytoscreen.io import open_slide, read_at_mpp
from cytoscreen.tiling import blocks
from cytoscreen.tiling import store as store_module
from cytoscreen.tiling.cache import FORMAT, open_cache, tile_slide, tile_slides
from cytoscreen.tiling.foreground import slide_foreground
from cytoscreen.tiling.obscured import ObscuredEstimate
from cytoscreen.tiling.store import StoreAttrs

Slide = tuple[Path, npt.NDArray[np.int64]]


def arr(store: Path, name: str, mode: str = "r") -> zarr.Array:
    return zarr.open_array(store / name, mode=mode)


def values(store: Path, name: str) -> np.ndarray:
    return np.asarray(arr(store, name)[:])


def store_digest(path: Path) -> dict[str, str]:
    """sha256 of every array's full contents (decoded), so stores compare by content."""
    return {
        name: hashlib.sha256(np.ascontiguousarray(values(path, name)).tobytes()).hexdigest()
        for name in ("images", "coords", "foreground", "valid", "chunk_done")
    }


def test_layout_attrs_and_complete_marker(cells_slide: Slide, small_cfg: Config, tmp_path: Path):
    path, _ = cells_slide
    out = tile_slide(path, small_cfg, tmp_path)
    assert out.parent == tmp_path and out.suffix == ".zarr"
    cache = open_cache(out)
    n = len(cache)
    assert n > 0 and cache.is_complete
    assert cache.images.shape == (n, 224, 224, 3) and cache.images.dtype == np.uint8
    assert cache.images.chunks == (4, 224, 224, 3)
    assert "lz4" in json.dumps(cache.images.metadata.to_dict()["codecs"]).lower()
    done = arr(out, "chunk_done")
    assert done.shape == (-(-n // 4),) and done.chunks == (1,)
    assert np.all(values(out, "chunk_done") == 1)
    # chunk files sit beside each array's zarr.json ("c.<i>.0.0.0"): no folder per chunk
    assert sorted(p.name for p in (out / "images").iterdir() if p.is_dir()) == []
    assert (out / "images" / "c.0.0.0.0").is_file() and (out / "valid" / "c.0").is_file()
    assert cache.valid.all() and cache.coords.dtype == np.int64
    a = dict(zarr.open_group(out, mode="r").attrs["cytoscreen"])  # type: ignore[arg-type]
    assert cache.attrs == StoreAttrs.from_dict(a)  # the typed record of what is on disk
    assert a["format"] == FORMAT == 3 and a["n_patches"] == n and a["slide_name"] == "cells.tif"
    assert a["config_hash"] == small_cfg.hash(*TILING_SECTIONS)
    assert set(a["config"]) == set(TILING_SECTIONS)
    assert a["mpp"] == pytest.approx(0.25) and a["size_l0"] == pytest.approx(448.0)
    assert {"cytoscreen", "zarr", "dask"} <= set(a["versions"])
    # the obscured share measured on the mask's view is kept with the store (no new array)
    with open_slide(path) as reader:
        expected = slide_foreground(reader, small_cfg.foreground).obscured
    stored = ObscuredEstimate.from_dict(a["obscured"])
    assert stored is not None and stored == expected and stored.cell_pixels > 0
    record = json.loads((out / "COMPLETE").read_text())
    assert record == {"config_hash": a["config_hash"], "n_patches": n}


def test_patches_equal_direct_reads(cells_slide: Slide, small_cfg: Config, tmp_path: Path):
    path, centres = cells_slide
    cache = open_cache(tile_slide(path, small_cfg, tmp_path))
    images = np.asarray(cache.images[:])
    with open_slide(path) as reader:
        for i in range(len(cache)):
            x, y = (int(v) for v in cache.coords[i])
            direct = read_at_mpp(reader, (x, y), (224, 224), 0.5)
            assert np.array_equal(images[i], direct), i
    # every cell centre lies inside some patch
    c = cache.coords
    inside = (
        (centres[:, None, 0] >= c[None, :, 0])
        & (centres[:, None, 0] < c[None, :, 0] + 448)
        & (centres[:, None, 1] >= c[None, :, 1])
        & (centres[:, None, 1] < c[None, :, 1] + 448)
    )
    assert inside.any(axis=1).all()


def test_resampled_target_close_to_direct_reads(cells_slide: Slide, tmp_path: Path):
    path, _ = cells_slide
    cfg = load_config(overrides={"tiling.target_mpp": 0.4, "tiling.patch_size": 96})
    cache = open_cache(tile_slide(path, cfg, tmp_path))
    assert cache.attrs.size_l0 == pytest.approx(96 * 0.4 / 0.25)
    with open_slide(path) as reader:
        for i in range(0, len(cache), max(1, len(cache) // 10)):
            x, y = (int(v) for v in cache.coords[i])
            direct = read_at_mpp(reader, (x, y), (96, 96), 0.4).astype(int)
            diff = np.abs(np.asarray(cache.images[i]).astype(int) - direct)
            assert diff.mean() < 6, i


def test_blank_slide_gives_empty_complete_store(blank_slide: Path, tmp_path: Path):
    cache = open_cache(tile_slide(blank_slide, Config(), tmp_path))
    assert len(cache) == 0 and cache.is_complete and cache.images.shape == (0, 224, 224, 3)


def test_reuse_and_rebuild(cells_slide: Slide, small_cfg: Config, tmp_path: Path):
    path, _ = cells_slide
    out = tile_slide(path, small_cfg, tmp_path)
    chunk_file = out / "images" / "c.0.0.0.0"
    before = chunk_file.stat().st_mtime_ns
    time.sleep(0.01)
    # the cache section does not change pixels: same store, untouched
    other_cache = load_config(
        overrides={
            "cache.chunk_patches": 4,
            "tiling.block_patches": 2,
            "cache.workers": 1,
            "tiling.target_mpp": 0.5,
        }  # fmt: skip
    )
    assert tile_slide(path, other_cache, tmp_path) == out
    assert chunk_file.stat().st_mtime_ns == before
    # a tiling change rebuilds the store in place with the new hash
    changed = load_config(
        overrides={
            "cache.chunk_patches": 4,
            "tiling.block_patches": 2,
            "tiling.patch_size": 128,
            "tiling.target_mpp": 0.5,
        }  # fmt: skip
    )
    assert tile_slide(path, changed, tmp_path) == out
    cache = open_cache(out)
    assert cache.is_complete and cache.images.shape[1:] == (128, 128, 3)
    assert cache.attrs.config_hash == changed.hash(*TILING_SECTIONS)


def test_refuses_to_overwrite_a_foreign_folder(cells_slide: Slide, tmp_path: Path):
    from cytoscreen.io import slide_key

    path, _ = cells_slide
    foreign = tmp_path / f"{slide_key(path)}.zarr"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CacheMismatch, match="not a Zarr patch store"):
        tile_slide(path, Config(), tmp_path)
    assert (foreign / "notes.txt").exists()


@pytest.mark.parametrize("separator", [".", "/"])  # "/": a store written before "." keys
def test_resume_writes_only_missing_chunks(
    cells_slide: Slide,
    small_cfg: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    separator: str,
):
    path, _ = cells_slide
    with monkeypatch.context() as m:
        m.setitem(store_module._CHUNK_KEYS, "separator", separator)
        out = tile_slide(path, small_cfg, tmp_path)
    assert (out / "images" / "c").is_dir() is (separator == "/")
    clean = store_digest(out)
    done, images = arr(out, "chunk_done", "r+"), arr(out, "images", "r+")
    lost = [1, done.shape[0] - 1]
    for c in lost:
        done[c] = 0
        images[c * 4 : c * 4 + 1] = np.zeros((1, 224, 224, 3), np.uint8)
    (out / "COMPLETE").unlink()
    assert not open_cache(out).is_complete
    calls: list[tuple[int, int]] = []
    tile_slide(path, small_cfg, tmp_path, progress=lambda d, t: calls.append((d, t)))
    n = open_cache(out).coords.shape[0]
    expected_pending = sum(min(n, (c + 1) * 4) - c * 4 for c in lost)
    assert calls[0] == (n - expected_pending, n) and calls[-1] == (n, n)
    assert len(calls) == len(lost) + 1
    assert store_digest(out) == clean and open_cache(out).is_complete


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cytoscreen.config import load_config
    from cytoscreen.tiling.cache import tile_slide
    cfg = load_config(overrides={"cache.chunk_patches": 4, "tiling.block_patches": 2,
                                 "cache.scheduler": "synchronous", "tiling.target_mpp": 0.5})
    def progress(done, total):
        if done >= 8:
            print("READY", flush=True)
            time.sleep(600)
    tile_slide(Path(sys.argv[1]), cfg, Path(sys.argv[2]), progress=progress)
    """
)


def test_sigkill_mid_run_then_resume_equals_clean_run(
    cells_slide: Slide, small_cfg: Config, tmp_path: Path
):
    path, _ = cells_slide
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(path), str(killed_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    store = next(killed_dir.glob("*.zarr"))
    assert not (store / "COMPLETE").exists()
    done_before = values(store, "chunk_done")
    assert 0 < done_before.sum() < done_before.size
    calls: list[tuple[int, int]] = []
    tile_slide(path, small_cfg, killed_dir, progress=lambda d, t: calls.append((d, t)))
    assert calls[0][0] == 4 * int(done_before.sum())
    clean = tile_slide(path, small_cfg, clean_dir)
    assert store_digest(store) == store_digest(clean)
    assert open_cache(store).is_complete


def test_unreadable_blocks_are_marked_invalid(
    cells_slide: Slide, small_cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path, _ = cells_slide
    real = blocks.reader_for
    calls = {"n": 0}
    failing: list[object] = []  # locations that fail every time they are read (damaged tiles)

    class Broken:
        def __init__(self, inner: object) -> None:
            self.inner = inner
            self.meta = inner.meta  # type: ignore[attr-defined]

        def read_region(self, *args: object) -> object:
            calls["n"] += 1
            if calls["n"] == 2:
                failing.append(args[0])
            if args[0] in failing:
                raise OSError("corrupt JPEG tile")
            return self.inner.read_region(*args)  # type: ignore[attr-defined]

    monkeypatch.setattr(blocks, "reader_for", lambda s: Broken(real(s)))
    cfg = load_config(
        overrides={
            "cache.chunk_patches": 4,
            "tiling.block_patches": 2,
            "cache.scheduler": "synchronous",
        }
    )
    cache = open_cache(tile_slide(path, cfg, tmp_path))
    assert cache.is_complete
    bad = ~cache.valid
    assert 0 < bad.sum() <= 4
    assert np.all(cache.images.get_orthogonal_selection((np.flatnonzero(bad),)) == 255)


def test_progress_and_several_slides(
    cells_slide: Slide, blank_slide: Path, small_cfg: Config, tmp_path: Path
):
    seen: dict[str, list[tuple[int, int]]] = {}
    outs = tile_slides(
        [cells_slide[0], blank_slide],
        small_cfg,
        tmp_path,
        progress=lambda s, d, t: seen.setdefault(s.name, []).append((d, t)),
    )
    assert len(outs) == 2 and outs[0] != outs[1]
    cells = seen["cells.tif"]
    assert [d for d, _ in cells] == sorted(d for d, _ in cells)
    assert cells[-1][0] == cells[-1][1] == len(open_cache(outs[0]))
    assert seen["blank.tif"][-1] == (0, 0)


@pytest.mark.parametrize("scheduler", ["synchronous", "processes"])
def test_local_schedulers_agree(cells_slide: Slide, tmp_path: Path, scheduler: str):
    path, _ = cells_slide
    base = {"cache.chunk_patches": 4, "tiling.block_patches": 2}
    threads = tile_slide(path, load_config(overrides=base), tmp_path / "threads")
    other = tile_slide(
        path, load_config(overrides={**base, "cache.scheduler": scheduler}), tmp_path / scheduler
    )
    assert store_digest(threads) == store_digest(other)


def test_distributed_cluster_matches_threads(cells_slide: Slide, small_cfg: Config, tmp_path: Path):
    from distributed import Client, LocalCluster

    path, _ = cells_slide
    threads = tile_slide(path, small_cfg, tmp_path / "threads")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        calls: list[tuple[int, int]] = []
        dist = tile_slide(
            path,
            small_cfg,
            tmp_path / "dist",
            client=client,
            progress=lambda d, t: calls.append((d, t)),
        )
    assert store_digest(threads) == store_digest(dist)
    assert calls[-1][0] == calls[-1][1] == len(open_cache(dist))


def test_local_run_does_not_import_distributed(cells_slide: Slide, tmp_path: Path):
    """Naming a local scheduler by string makes Dask import ``distributed`` (hundreds of ms in
    every tiling child process); the tiler passes the scheduler function instead."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from cytoscreen.config import load_config
        from cytoscreen.tiling.cache import tile_slide
        for scheduler in ("threads", "synchronous"):
            cfg = load_config(overrides={"cache.scheduler": scheduler})
            tile_slide(Path(sys.argv[1]), cfg, Path(sys.argv[2]) / scheduler)
        print("distributed" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(cells_slide[0]), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"
