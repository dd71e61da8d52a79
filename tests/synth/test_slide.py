from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import openslide
import pytest
import tiffslide

from cytoscreen.synth import CellKit, SlideSpec, SlideTruth, generate_slide, load_truth
from cytoscreen.synth.kit import severity
from cytoscreen.synth.slide import slide_label, truth_paths

Slides = dict[str, tuple[Path, SlideTruth]]


def _od(rgb: np.ndarray) -> np.ndarray:
    return -np.log10(np.maximum(rgb[..., :3].astype(float), 1.0) / 255.0)


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_opens_in_both_readers_with_mpp_and_pyramid(slides: Slides, backend: str) -> None:
    path, truth = slides["positive"]
    opener = openslide.OpenSlide if backend == "openslide" else tiffslide.TiffSlide
    with opener(str(path)) as s:
        assert s.dimensions == (1280, 1024) == (truth.width, truth.height)
        assert s.level_count >= 2
        assert s.level_dimensions[1] == (640, 512)
        assert float(s.properties[f"{backend}.mpp-x"]) == pytest.approx(0.25, rel=1e-3)
        assert float(s.properties[f"{backend}.mpp-y"]) == pytest.approx(0.25, rel=1e-3)


def test_slide_without_mpp(slides: Slides) -> None:
    path, truth = slides["nompp"]
    assert truth.mpp is None
    with openslide.OpenSlide(str(path)) as s:
        assert "openslide.mpp-x" not in s.properties


def test_truth_cells_are_where_the_pixels_are_dark(slides: Slides) -> None:
    path, truth = slides["positive"]
    rng = np.random.default_rng(0)
    abnormal = [c for c in truth.cells if c.abnormal]
    normal = [c for c in truth.cells if not c.abnormal]
    sample = abnormal + [normal[i] for i in rng.choice(len(normal), 8, replace=False)]
    with openslide.OpenSlide(str(path)) as s:
        glass = _od(np.asarray(s.read_region((0, 0), 0, (24, 24)))).mean()
        for c in sample:
            x0, y0, x1, y1 = c.bbox
            assert x0 < c.x < x1 and y0 < c.y < y1
            region = np.asarray(s.read_region((x0, y0), 0, (x1 - x0, y1 - y0)))
            assert _od(region).max(axis=2).mean() > glass + 0.05, c
        # a truth box holds clearly more stain than glass far from any cell
        far = np.asarray(s.read_region((4, 4), 0, (40, 40)))
        assert _od(far).max() < 0.1


def test_labels_follow_the_rule(slides: Slides) -> None:
    pos, neg, blank = slides["positive"][1], slides["negative"][1], slides["blank"][1]
    assert pos.label == "positive" and pos.n_abnormal == 4
    assert pos.worst_bethesda == max((c.bethesda for c in pos.cells), key=severity) != "NILM"
    assert neg.label == "negative" and neg.n_abnormal == 0 and neg.worst_bethesda == "NILM"
    assert len(neg.cells) > 50
    assert blank.label == "blank" and blank.cells == () and blank.worst_bethesda is None
    assert slide_label(()) == ("blank", None)


def test_negative_slides_show_no_abnormal_nucleus(slides: Slides, kit: CellKit) -> None:
    """A negative slide is built only from pieces whose windows keep the negative clearance
    from every labelled abnormal nucleus of their field: every labelled cell it shows is NILM,
    and no abnormal nucleus lies inside any piece's windows grown by the clearance."""
    from cytoscreen.synth.fields import NEGATIVE_CLEARANCE
    from cytoscreen.synth.layout import plan_layout

    for name in ("negative", "conventional", "nompp"):
        truth = slides[name][1]
        assert truth.cells and all(c.bethesda == "NILM" for c in truth.cells), name
    spec = SlideSpec(size=1024, label="negative", seed=6, density=3000.0)
    layout = plan_layout(spec, kit)
    for s in layout.sprite[layout.is_piece]:
        piece = kit.pieces[int(s)]
        fld = kit.fields[piece.image_id]
        for w in piece.windows:
            x0, y0, x1, y1 = fld.window(w)
            for a in fld.abnormal_ids:
                nx, ny = fld.nucleus(a)
                m = NEGATIVE_CLEARANCE
                assert not (x0 - m <= nx < x1 + m and y0 - m <= ny < y1 + m)


def test_slide_holds_its_target_cells_and_records_its_conditions(slides: Slides) -> None:
    truth = slides["conventional"][1]
    assert truth.prep == "conventional"
    assert truth.conditions["stain"] == pytest.approx(1.2)
    assert truth.conditions["blood"] == pytest.approx(0.5)
    expected = 3000.0 * truth.area_mm2  # density x cell-bearing area
    assert expected * 0.9 <= len(truth.cells) <= expected * 1.3
    assert slides["positive"][1].prep == "liquid"


def test_blank_slide_looks_blank(slides: Slides) -> None:
    path, _ = slides["blank"]
    with openslide.OpenSlide(str(path)) as s:
        thumb = np.asarray(s.read_region((0, 0), 0, s.dimensions))
    assert (_od(thumb).max(axis=2) > 0.15).mean() < 0.001  # no stained objects anywhere


def test_cells_cover_a_realistic_share_of_the_circle(slides: Slides) -> None:
    path, truth = slides["negative"]
    cx, cy, r = truth.circle
    with openslide.OpenSlide(str(path)) as s:
        rgb = np.asarray(s.read_region((0, 0), 0, s.dimensions))
    yy, xx = np.mgrid[0 : rgb.shape[0], 0 : rgb.shape[1]]
    inside = np.hypot(xx - cx, yy - cy) < r
    stained = _od(rgb).max(axis=2) > 0.1
    assert 0.1 < stained[inside].mean() < 0.8
    assert stained[~inside].mean() < 0.1  # cells stay inside the liquid-based preparation's circle


def test_truth_files_and_geojson(slides: Slides) -> None:
    path, truth = slides["positive"]
    json_path, geo_path = truth_paths(path)
    assert load_truth(json_path) == truth
    geo = json.loads(geo_path.read_text())
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == len(truth.cells)
    for feat, cell in zip(geo["features"], truth.cells, strict=True):
        assert feat["geometry"]["type"] == "Polygon"
        ring = feat["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) == 5
        props = feat["properties"]
        assert props["objectType"] == "annotation"
        assert props["classification"]["name"] == cell.bethesda
        assert len(props["classification"]["color"]) == 3


def test_deterministic_for_a_seed(tmp_path: Path, kit: CellKit) -> None:
    spec = SlideSpec(size=512, label="positive", seed=11, n_abnormal=2)
    a = generate_slide(tmp_path / "a.tiff", spec, kit)
    b = generate_slide(tmp_path / "b.tiff", spec, kit)
    c = generate_slide(
        tmp_path / "c.tiff", SlideSpec(size=512, label="positive", seed=12, n_abnormal=2), kit
    )
    assert a.cells == b.cells and a.cells != c.cells
    with (
        openslide.OpenSlide(str(tmp_path / "a.tiff")) as sa,
        openslide.OpenSlide(str(tmp_path / "b.tiff")) as sb,
    ):
        for level in range(sa.level_count):
            size = sa.level_dimensions[level]
            np.testing.assert_array_equal(
                np.asarray(sa.read_region((0, 0), level, size)),
                np.asarray(sb.read_region((0, 0), level, size)),
            )


def test_memory_is_bounded_by_regions_not_slide_size(tmp_path: Path, kit: CellKit) -> None:
    size = 3072  # one level-0 RGB array alone would be 27 MB (float OD canvas: 113 MB)
    tracemalloc.start()
    generate_slide(tmp_path / "m.tiff", SlideSpec(size=size, seed=1), kit, cache_mb=4, reduce_mb=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 2**20, f"peak traced memory {peak / 2**20:.1f} MB"


@pytest.mark.slow
def test_large_slide_peak_rss_under_2gb(tmp_path: Path, kit: CellKit) -> None:
    import subprocess
    import sys

    code = (
        "import resource, sys;"
        "from cytoscreen.synth import SlideSpec, generate_slide, bundled_kit;"
        f"generate_slide(r'{tmp_path / 'big.tiff'}', SlideSpec(size=20000, seed=2), bundled_kit());"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) * 1024 < 2 * 2**30  # ru_maxrss is in KiB on Linux


def test_greyscale_puts_luminance_in_all_three_channels() -> None:
    from cytoscreen.synth.slide import greyscale

    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 120, 60]]], np.uint8)
    out = greyscale(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out[0, :, 0].tolist() == [76, 150, 29, round(0.299 * 200 + 0.587 * 120 + 0.114 * 60)]
