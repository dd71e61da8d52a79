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
