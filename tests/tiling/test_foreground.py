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
    """>= 99.5% of ground-truth cells of generated slides lie inside emitted patches."""
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
            slide, SlideSpec(size=2560, seed=seed, label=label, density=400.0, grouping=0.0), kit
        )
        cache = open_cache(tile_slide(slide, Config(), tmp_path / "cache"))
        if label == "blank":
            assert len(cache) == 0
            continue
        xy, s = cache.coords, cache.attrs.size_l0
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
        assert 0.8 * len(c) <= counted <= 1.5 * len(c), (counted, len(c))
        # the mask is selective: the slide's empty margins outside the cell circle are skipped
        from cytoscreen.tiling.grid import grid_positions

        assert len(cache) < len(grid_positions(2560, s, s)) ** 2
    assert total > 50 and inside / total >= 0.995


# --------------------------------------------------------------------------- lone cells, dirt
# Synthetic views read at 2 um/px (the default sample_mpp) and pooled by 4 into the 8 um/px
# mask grid, as slide_foreground does.

SAMPLE_MPP = 2.0
GLASS = np.array([239.0, 237.0, 241.0])


def _view(od: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pixels through an optical-density image (h, w, 3) on slightly noisy glass."""
    rng = np.random.default_rng(seed)
    lit = GLASS * (1.0 + rng.normal(0.0, 0.004, od.shape[:2] + (1,)))
    return np.clip(lit * 10.0 ** (-od) + 0.5, 0, 255).astype(np.uint8)


def _disc_od(shape: tuple[int, int], x: float, y: float, r_um: float) -> np.ndarray:
    """A soft disc of radius ``r_um`` (1 inside, a 1-sample ramp) on a SAMPLE_MPP grid."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    dist = np.hypot(xx - x, yy - y) * SAMPLE_MPP
    return np.clip((r_um - dist) / SAMPLE_MPP + 0.5, 0.0, 1.0)


def _mask(rgb: np.ndarray, cfg: ForegroundConfig | None = None) -> np.ndarray:
    mean, darkest = fgm.pool(rgb, 4)
    return fgm.stain_mask(mean, 8.0, cfg or ForegroundConfig(), darkest)


NUCLEUS_OD = np.array([0.55, 0.75, 0.55])  # Pap nuclear colour (CRIC median, per channel)
CYTOPLASM_OD = np.array([0.03, 0.06, 0.07])  # pale superficial cytoplasm


@pytest.mark.parametrize("stain", [0.5, 0.7, 1.0])
@pytest.mark.parametrize("nucleus_um", [2.5, 3.5])
def test_lone_pale_cell_on_glass_is_kept(stain: float, nucleus_um: float) -> None:
    """A pale cell with a small, pale nucleus, alone on glass at every offset of the mask grid:
    its nucleus lies in the mask (8 um/px: the nucleus is under one mask pixel)."""
    for off in range(4):
        x, y = 40.0 + off, 40.0 + off / 2
        od = _disc_od((80, 80), x, y, 22.0)[..., None] * CYTOPLASM_OD * stain
        od = od + _disc_od((80, 80), x, y, nucleus_um)[..., None] * NUCLEUS_OD * stain
        mask = _mask(_view(od, off))
        assert mask[int(y // 4), int(x // 4)], (stain, nucleus_um, off)
        assert mask.mean() < 0.5


def test_mean_pooling_alone_loses_the_lone_nucleus() -> None:
    """Why the mask pools the darkest value: the mean of an 8 um pixel averages a pale cell's
    4 um nucleus (across four mask pixels here) into the glass, and the cell is lost."""
    od = _disc_od((80, 80), 40.0, 40.0, 22.0)[..., None] * CYTOPLASM_OD * 0.5
    od = od + _disc_od((80, 80), 40.0, 40.0, 2.0)[..., None] * NUCLEUS_OD * 0.5
    rgb = _view(od)
    mean, _ = fgm.pool(rgb, 4)
    assert not fgm.stain_mask(mean, 8.0, ForegroundConfig()).any()
    assert _mask(rgb)[10, 10]


def test_blank_glass_with_uneven_light_stays_out() -> None:
    yy, xx = np.mgrid[0:400, 0:400]
    vignette = 1.0 - 0.12 * (np.hypot(xx - 200, yy - 200) / 280.0) ** 2
    rng = np.random.default_rng(1)
    lit = GLASS * vignette[..., None] * (1.0 + rng.normal(0.0, 0.01, (400, 400, 1)))
    assert not _mask(np.clip(lit, 0, 255).astype(np.uint8)).any()


def test_grey_dust_stays_out_and_a_cell_beside_it_is_kept() -> None:
    rng = np.random.default_rng(2)
    od = np.zeros((400, 400, 3))
    for _ in range(60):  # dark grey specks, 2-6 um across, some opaque
        x, y = rng.uniform(10, 390, 2)
        grey = rng.uniform(0.3, 1.5)
        od += _disc_od((400, 400), x, y, rng.uniform(1.0, 3.0))[..., None] * grey
    assert not _mask(_view(od)).any()
    cell = _disc_od((400, 400), 200, 200, 22.0)[..., None] * CYTOPLASM_OD
    cell = cell + _disc_od((400, 400), 200, 200, 3.0)[..., None] * NUCLEUS_OD
    mask = _mask(_view(od + cell))
    assert mask[50, 50] and mask.mean() < 0.1


def test_a_bubble_rim_stays_out() -> None:
    """An air bubble: a thin grey refractile rim around clear glass."""
    yy, xx = np.mgrid[0:500, 0:500]
    dist = np.hypot(xx - 250, yy - 250) * SAMPLE_MPP  # um
    for radius_um, rim_od in ((150.0, 0.4), (350.0, 0.8)):
        rim = np.clip(1.0 - np.abs(dist - radius_um) / 2.0, 0.0, 1.0)  # ~3 um wide
        od = rim[..., None] * np.array([rim_od, rim_od * 1.02, rim_od * 0.98])
        assert not _mask(_view(od)).any(), radius_um


@pytest.mark.parametrize("ink", [(0.9, 0.5, 0.15), (0.8, 0.2, 0.7), (1.2, 1.2, 1.1)])
def test_pen_marks_stay_out_and_cells_beside_them_are_kept(ink: tuple[float, float, float]) -> None:
    """A marker stroke (blue, green, black) 400 um wide across the view."""
    yy, xx = np.mgrid[0:400, 0:500]
    stroke = np.clip(1.0 - np.abs(xx - 0.3 * yy - 150) * SAMPLE_MPP / 200.0, 0.0, 1.0)
    od = np.clip(stroke * 4.0, 0.0, 1.0)[..., None] * np.array(ink)
    mask = _mask(_view(od))
    assert mask.mean() < 0.02  # at most the stroke's soft edge
    for x, y in ((420, 100), (430, 320)):
        od = od + _disc_od((400, 500), x, y, 22.0)[..., None] * CYTOPLASM_OD * 2
        od = od + _disc_od((400, 500), x, y, 3.0)[..., None] * NUCLEUS_OD
    mask = _mask(_view(od))
    assert mask[100 // 4, 420 // 4] and mask[320 // 4, 430 // 4]
    assert mask[:, :75].mean() < 0.02  # the stroke's core is still out


def test_dense_dark_cells_are_not_taken_for_ink() -> None:
    """A crowded sheet of dark nuclei is as dark as ink on average, but uneven: foreground."""
    rng = np.random.default_rng(4)
    od = np.full((300, 300, 3), 0.0) + CYTOPLASM_OD * 6  # thick cytoplasm, OD ~0.4
    for _ in range(400):
        x, y = rng.uniform(0, 300, 2)
        od = od + _disc_od((300, 300), x, y, 3.5)[..., None] * NUCLEUS_OD
    mask = _mask(_view(od))
    assert mask.mean() > 0.9


def test_pool_gives_mean_and_darkest() -> None:
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (13, 10, 3)).astype(np.uint8)
    mean, darkest = fgm.pool(img, 4)
    padded = np.full((16, 12, 3), 255, np.uint8)
    padded[:13, :10] = img
    blocks = padded.reshape(4, 4, 3, 4, 3).astype(np.int64)
    assert np.array_equal(darkest, blocks.min(axis=(1, 3)))
    assert np.array_equal(mean, (blocks.sum(axis=(1, 3)) + 8) // 16)
    big, _ = fgm.pool(np.full((32, 32, 3), 255, np.uint8), 16)  # sums over 256 values
    assert big.shape == (2, 2, 3) and (big == 255).all()


def test_pooled_read_equals_pooling_the_full_read(
    cells_slide: tuple[Path, npt.NDArray[np.int64]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = cells_slide
    with open_slide(path) as reader:
        whole = fgm.read_thumbnail(reader, 2.0)
        monkeypatch.setattr(fgm, "_MAX_READ_PIXELS", 40_000)  # many strips
        mean, darkest = fgm.read_pooled(reader, 2.0, 4)
    m, d = fgm.pool(whole, 4)
    assert mean.shape == m.shape and darkest.shape == d.shape
    assert np.percentile(np.abs(mean.astype(int) - m), 99) <= 3
    assert np.percentile(np.abs(darkest.astype(int) - d), 99) <= 3


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
