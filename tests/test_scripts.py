"""The analysis and benchmark scripts start: their imports resolve and ``--help`` works."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cytoscreen.synth.slide import CellTruth, SlideTruth

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
    module = importlib.util.module_from_spec(spec)
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


def test_patch_of_cells_finds_the_patch_holding_each_nucleus() -> None:
    patch_of_cells = _script("measure_negative_sources").patch_of_cells

    def cell(x: float, y: float) -> CellTruth:
        return CellTruth(x, y, (0, 0, 1, 1), "NILM", False, 1)

    truth = SlideTruth(
        slide="s.tiff", width=1000, height=1000, mpp=0.25, label="negative",
        worst_bethesda="NILM", seed=0, circle=(0.0, 0.0, 0.0),
        cells=(cell(10, 10), cell(150, 120), cell(99.9, 0), cell(100, 0), cell(500, 500)),
    )  # fmt: skip
    xy = np.array([[0, 0], [100, 0], [100, 100]], float)  # patches of side 100, one missing
    np.testing.assert_array_equal(patch_of_cells(truth, xy, 100.0), [0, 2, 0, 1, -1])
