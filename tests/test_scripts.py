"""The analysis and benchmark scripts start: their imports resolve and ``--help`` works."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cytoscreen.synth.slide import CellTruth, SlideTruth, nucleus_patches

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.parametrize(
    "name",
    [
        "measure_cell_position",
        "measure_overlap",
        "tune_cascade",
        "compare_precisions",
        "measure_top_rescore",
        "measure_negative_sources",
        "measure_pool_ruling",
        "measure_field_refine",
        "measure_ensemble",
    ],
)
def test_script_help(name: str) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), "--help"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "usage:" in run.stdout


def test_bench_e2e_loads_where_cytoscreen_is_not_installed() -> None:
    # the same file is TIAToolbox's worker in TIAToolbox's own environment, without cytoscreen
    code = (
        "import sys, importlib.util\n"
        "sys.modules['cytoscreen'] = None  # any import of cytoscreen now fails\n"
        "spec = importlib.util.spec_from_file_location('bench_e2e', sys.argv[1])\n"
        "module = sys.modules['bench_e2e'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert callable(module.tia_worker)\n"
    )
    script = str(SCRIPTS / "bench_e2e.py")
    run = subprocess.run([sys.executable, "-c", code, script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[name] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_dihedral_gives_the_eight_orientations_upright_first() -> None:
    dihedral = _script("measure_top_rescore").dihedral
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 6, 6, 3), dtype=np.uint8)
    views = dihedral(images)
    assert views.shape == (24, 6, 6, 3)
    np.testing.assert_array_equal(views[:3], images)  # orientation-major, upright first
    first = {views[k * 3].tobytes() for k in range(8)}
    assert len(first) == 8  # a random patch looks different in every orientation
    np.testing.assert_array_equal(views[3 * 4], images[0][:, ::-1])  # mirrored, no turn


def test_nucleus_patches_finds_the_patch_holding_each_nucleus() -> None:

    def cell(x: float, y: float) -> CellTruth:
        return CellTruth(x, y, (0, 0, 1, 1), "NILM", False, 1)

    truth = SlideTruth(
        slide="s.tiff", width=1000, height=1000, mpp=0.25, label="negative",
        worst_bethesda="NILM", seed=0, circle=(0.0, 0.0, 0.0),
        cells=(cell(10, 10), cell(150, 120), cell(99.9, 0), cell(100, 0), cell(500, 500)),
    )  # fmt: skip
    xy = np.array([[0, 0], [100, 0], [100, 100]], float)  # patches of side 100, one missing
    np.testing.assert_array_equal(nucleus_patches(truth, xy, 100.0), [0, 2, 0, 1, -1])


def test_pool_ruling_takes_the_doubted_cell_off_every_slide() -> None:
    m = _script("measure_pool_ruling")
    rng = np.random.default_rng(0)

    def slide(i: int, negative: bool) -> object:
        # 40 patches of background (0.0-0.3); cell 7 (NILM, doubted) sits in patches 0-11 of
        # every slide at 0.95; a positive's abnormal cell (patch 12) scores 0.9
        p = rng.uniform(0.0, 0.3, 40)
        cells: list[set[int]] = [{100 + j} for j in range(40)]
        for j in range(12):
            p[j], cells[j] = 0.95, {7}
        if not negative:
            p[12], cells[12] = 0.9, set()
        return m.Slide(f"s{i}", "liquid", negative, 0 if negative else 1, p, cells)

    slides = [slide(i, True) for i in range(4)] + [slide(i, False) for i in range(4, 8)]
    assert m.doubt_ranking(slides)[0] == 7
    before, after = m.figures(slides, set()), m.figures(slides, {7})
    assert before.set_aside == 0 and before.auc < 0.75  # cell 7 tops every slide
    assert after.auc == 1.0 and after.set_aside == 4  # without it the positives stand out
    assert after.dropped == pytest.approx(12 / 40)


def test_field_refine_lifts_only_patches_sharing_a_window_with_the_best() -> None:
    m = _script("measure_field_refine")
    side = 10.0
    # a 3 x 1 row of patches: (0, 0), (1, 0), (2, 0); one x-shifted window between each pair
    xy = np.array([[0, 0], [10, 0], [20, 0]], float)
    saved = {
        "x": np.array([0.9, 0.8]), "x_i": np.array([0, 1]),
        "y": np.zeros(0), "y_i": np.zeros(0, int),
        "xy": np.zeros(0), "xy_i": np.zeros(0, int),
    }  # fmt: skip
    windows = m.windows_of(xy, side, saved)
    assert windows.covers == ((0, 1), (1, 2))
    p = np.array([0.1, 0.3, 0.2])
    q, used = m.refined(p, windows, 0)
    np.testing.assert_array_equal(q, p)  # no second look
    assert used == 0
    q, used = m.refined(p, windows, 1)  # best patch: 1, in both windows
    np.testing.assert_allclose(q, [0.9, 0.9, 0.8])
    assert used == 2
    p2 = np.array([0.5, 0.1, np.nan])  # best patch 0: only the first window; NaN stays NaN
    q, used = m.refined(p2, windows, 1)
    assert used == 1 and q[0] == 0.9 and q[1] == 0.9 and np.isnan(q[2])


def test_field_refine_sees_a_cut_cell_once_lifted_and_keeps_slides_apart() -> None:
    m = _script("measure_field_refine")
    side = 10.0
    xy = np.array([[x, 0] for x in range(0, 100, 10)], float)  # 10 patches in a row
    covers = tuple((i, i + 1) for i in range(9))
    p = np.full(10, 0.05)
    p[8] = 0.45  # the cut abnormal cell lies between patches 8 and 9, both below 0.5
    scores = np.full(9, 0.05)
    scores[8] = 0.95  # the window centred on it sees it whole
    slide = m.Slide(p, xy, side, m.Windows(scores, covers), np.array([[90.0, 5.0]]))
    assert m.shown_in_top(slide, 0, 0.5) == (False, 0)  # no field at all on the grid
    shown, used = m.shown_in_top(slide, 1, 0.5)
    assert shown and used == 2
    pair = m.side_by_side(slide, slide)
    assert len(pair.p) == 20 and pair.windows.covers[9] == (10, 11)
    assert pair.xy[10:, 0].min() > xy[:, 0].max() + 3 * side  # no field spans both


def test_ensemble_pairs_slides_by_path_and_combines_scores_per_patch() -> None:
    m = _script("measure_ensemble")
    a = np.array([0.2, 0.9, np.nan])
    b = np.array([0.8, 0.1, np.nan])
    np.testing.assert_allclose(m.COMBINE["mean probability"](a, b)[:2], [0.5, 0.5])
    np.testing.assert_allclose(m.COMBINE["minimum"](a, b)[:2], [0.2, 0.1])
    np.testing.assert_allclose(m.COMBINE["mean logit"](a, b)[:2], [0.5, 0.5], atol=1e-12)
    assert np.isnan(m.COMBINE["geometric mean"](a, b)[2])  # no score stays no score
    assert m.slide_score(np.r_[np.full(10, 0.5), np.full(5, 0.1), np.nan]) == 0.5
