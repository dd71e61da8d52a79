"""The analysis and benchmark scripts start: their imports resolve and ``--help`` works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.parametrize(
    "name",
    ["measure_cell_position", "measure_overlap", "tune_cascade", "compare_precisions"],
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
