"""Stain mask: blank glass gives nothing, stained cells are found, specks dropped, borders grown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cytoscreen.config import ForegroundConfig
from cytoscreen.io import open_slide
from cytoscreen.tiling import foreground as fgm


def _glass(h: int, w: int, level: int = 238, noise: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level + rng.integers(0, noise, (h, w, 3))).astype(np.uint8)


@pytest.mark.parametrize("level", [250, 238, 215, 190])
@pytest.mark.parametrize("method", ["od", "saturation"])
def test_blank_glass_gives_empty_mask(level: int, method: str) -> None:
    cfg = ForegroundConfig(method=method)  # type: ignore[arg-type]
    mask = fgm.stain_mask(_glass(120, 150, level=level, noise=6), 8.0, cfg)
    assert mask.shape == (120, 150) and not mask.any()


@pytest.mark.parametrize("method", ["od", "saturation"])
def test_stained_cell_found_and_dilated(method: str) -> None:
    img = _glass(100, 100)
    img[40:50, 40:50] = (150, 100, 170)
    cfg = ForegroundConfig(method=method, dilate_um=16.0)  # type: ignore[arg-type]
    mask = fgm.stain_mask(img, 8.0, cfg)
    assert mask[40:50, 40:50].all()
    # dilated by 16 um = 2 px at 8 um/px, not more than 3
    assert mask[38, 45] and mask[45, 51] and not mask[36, 45] and not mask[45, 53]
    assert not mask[:30].any()


def test_no_dilation_keeps_exact_extent() -> None:
    img = _glass(60, 60)
    img[10:20, 30:35] = (120, 90, 150)
    mask = fgm.stain_mask(img, 8.0, ForegroundConfig(dilate_um=0.0))
    expected = np.zeros((60, 60), bool)
    expected[10:20, 30:35] = True
    assert np.array_equal(mask, expected)


def test_specks_below_min_area_are_removed() -> None:
    img = _glass(80, 80)
    img[5:7, 5:7] = (100, 80, 120)  # 4 px = 256 um2 at 8 um/px
    img[40:50, 40:50] = (100, 80, 120)  # 100 px
    cfg = ForegroundConfig(min_object_um2=300.0, dilate_um=0.0)
    mask = fgm.stain_mask(img, 8.0, cfg)
    assert not mask[:20, :20].any() and mask[40:50, 40:50].all()
    kept = fgm.stain_mask(img, 8.0, ForegroundConfig(min_object_um2=200.0, dilate_um=0.0))
    assert kept[5:7, 5:7].all()


@pytest.mark.parametrize(("threshold", "rim_found"), [(0.05, True), (0.09, False)])
def test_od_threshold_sets_how_far_faint_cytoplasm_reaches(threshold: float, rim_found: bool):
    img = _glass(50, 50, noise=1)
    img[15:35, 15:35] = (200, 200, 200)  # faint cytoplasm, OD ~0.075 against 238 glass
    img[23:27, 23:27] = (90, 60, 120)  # nucleus
    mask = fgm.stain_mask(img, 8.0, ForegroundConfig(od_threshold=threshold, dilate_um=0.0))
    assert mask[23:27, 23:27].all()
    assert bool(mask[15:35, 15:35].all()) is rim_found


def test_faint_patch_without_a_nucleus_is_not_foreground() -> None:
    img = _glass(50, 50, noise=1)
    img[15:35, 15:35] = (200, 200, 200)  # above od_threshold, below twice it
    assert not fgm.stain_mask(img, 8.0, ForegroundConfig(dilate_um=0.0)).any()


def test_optical_density_relative_to_background() -> None:
    img = np.full((10, 10, 3), 200, np.uint8)
    img[0, 0] = (20, 200, 200)
    od = fgm.optical_density(img)
    assert od[5, 5] == pytest.approx(0.0, abs=1e-6)
    assert od[0, 0] == pytest.approx(1.0, abs=1e-3)  # log10(200 / 20)


def test_slide_foreground_on_blank_slide_is_empty(blank_slide: Path) -> None:
    with open_slide(blank_slide) as reader:
        fg = fgm.slide_foreground(reader, ForegroundConfig())
    assert fg.fraction == 0.0
    assert fg.scale == pytest.approx(32.0)
    assert fg.mask.shape == (round(2000 / 32 + 0.49), round(2500 / 32 + 0.49))


def test_slide_foreground_covers_cells(
    cells_slide: tuple[Path, npt.NDArray[np.int64]],
) -> None:
    path, centres = cells_slide
    with open_slide(path) as reader:
        fg = fgm.slide_foreground(reader, ForegroundConfig())
    ij = (centres[:, ::-1] / fg.scale).astype(int)
    assert fg.mask[ij[:, 0], ij[:, 1]].all()
    assert 0.0 < fg.fraction < 0.2


def test_strip_reads_equal_one_read(
    cells_slide: tuple[Path, npt.NDArray[np.int64]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = cells_slide
    with open_slide(path) as reader:
        whole = fgm.read_thumbnail(reader, 2.0)
        monkeypatch.setattr(fgm, "_MAX_READ_PIXELS", 40_000)
        strips = fgm.read_thumbnail(reader, 2.0)
    assert strips.shape == whole.shape
    diff = np.abs(strips.astype(int) - whole.astype(int))
    assert np.percentile(diff, 99) <= 3


def test_generated_slides_cells_inside_patches(tmp_path: Path) -> None:
    """>= 99% of ground-truth cells of generated slides lie inside emitted patches."""
    from cytoscreen.config import Config
    from cytoscreen.synth.kit import bundled_kit
    from cytoscreen.synth.layout import SlideSpec
    from cytoscreen.synth.slide import generate_slide
    from cytoscreen.tiling.cache import open_cache, tile_slide

    kit = bundled_kit()
    inside = total = 0
    for seed, label in [(2, "positive"), (3, "blank")]:
        slide = tmp_path / f"{label}.tif"
        truth = generate_slide(
            slide,
            SlideSpec(size=2560, seed=seed, label=label, cell_bearing=0.4, clustering=0.0),
            kit,
        )
        cache = open_cache(tile_slide(slide, Config(), tmp_path / "cache"))
        if label == "blank":
            assert len(cache) == 0
            continue
        xy, s = cache.coords, cache.attrs["size_l0"]
        c = np.array([(cell.x, cell.y) for cell in truth.cells])
        hit = (
            (c[:, None, 0] >= xy[None, :, 0])
            & (c[:, None, 0] < xy[None, :, 0] + s)
            & (c[:, None, 1] >= xy[None, :, 1])
            & (c[:, None, 1] < xy[None, :, 1] + s)
        ).any(axis=1)
        inside, total = inside + int(hit.sum()), total + len(c)
        # cellularity: the tiler's nucleus count is an estimate of the cells placed
        counted = int(cache.nuclei[cache.valid].sum())
        assert 0.5 * len(c) <= counted <= 1.5 * len(c), (counted, len(c))
        # the mask is selective: the slide's empty margins outside the cell circle are skipped
        from cytoscreen.tiling.grid import grid_positions

        assert len(cache) < len(grid_positions(2560, s, s)) ** 2
    assert total > 100 and inside / total >= 0.99


@pytest.mark.parametrize("radius", [0.5, 1.0, 1.5, 2.0, 2.3, 3.0, 5.5, 8.0, 9.5])
def test_disk_dilation_equals_the_distance_map_rule(radius: float) -> None:
    from skimage.morphology import isotropic_dilation

    rng = np.random.default_rng(int(radius * 10))
    for density in (0.002, 0.02, 0.2):
        mask = rng.random((57, 83)) < density
        mask[0, 5] = mask[56, 82] = True  # objects on the border too
        expected = np.asarray(isotropic_dilation(mask, radius), dtype=bool)
        assert np.array_equal(fgm.dilate_disk(mask, radius), expected), density
    tiny = np.zeros((2, 3), bool)  # a mask narrower than the disk (a very small slide)
    tiny[1, 2] = True
    expected = np.asarray(isotropic_dilation(tiny, radius), dtype=bool)
    assert np.array_equal(fgm.dilate_disk(tiny, radius), expected)


def test_optical_density_lookup_equals_the_formula() -> None:
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (31, 47, 3), dtype=np.uint8) for _ in range(5)]
    images.append((225 + rng.integers(0, 25, (64, 64, 3))).astype(np.uint8))  # dim glass
    for img in images:
        px = img.astype(np.float32)
        bright = np.maximum(np.percentile(px.reshape(-1, 3), 99.0, axis=0), 200.0)
        od = -np.log10(np.maximum(px, 1.0) / bright.astype(np.float32))
        expected = np.clip(od, 0.0, None).max(axis=2)
        got = fgm.optical_density(img)
        assert got.dtype == np.float32 and np.array_equal(got, expected)
        assert np.array_equal(fgm.optical_density(img.astype(np.float32)), expected)


@pytest.mark.parametrize("seed", range(4))
def test_histogram_percentile_equals_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (1, 2, 7, 1000, 4097):
        for values in (
            rng.integers(0, 256, n),  # order statistics usually differ: numpy interpolates
            rng.integers(236, 240, n),  # glass: mostly equal neighbours
            np.full(n, int(rng.integers(0, 256))),
        ):
            channel = values.astype(np.uint8)
            for q in (0.0, 12.5, 50.0, 99.0, 100.0):
                expected = float(np.percentile(channel.astype(np.float32), q))
                assert fgm._percentile_u8(channel, q) == expected, (n, q)
