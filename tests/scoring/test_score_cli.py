from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from typer.testing import CliRunner

from cytoscreen.cli import app
from cytoscreen.scoring.checkpoint import load_checkpoint

from .conftest import make_store


def test_score_command_scores_a_folder_of_stores_resumably_and_reports_bad_ones(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    cache = tmp_path / "cache"
    make_store(cache / "a.zarr", 12)
    make_store(cache / "b.zarr", 20, seed=1)
    make_store(cache / "c.zarr", 8, complete=False)  # tiling never finished
    runner = CliRunner()
    args = ["score", str(cache), "--model", str(tiny_model_dir), "--precision", "fp32"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output  # c.zarr failed, the others were scored
    model_id = load_checkpoint(tiny_model_dir)[1].model_id
    for name, n in (("a.zarr", 12), ("b.zarr", 20)):
        prob = np.asarray(zarr.open_array(cache / name, path=f"scores/{model_id}/prob")[...])
        assert prob.shape == (n,) and np.isfinite(prob).all()
        assert (cache / name / "scores" / model_id / "COMPLETE").exists()
    assert not (cache / "c.zarr" / "scores").exists()
    assert "c.zarr" in res.output and "torch fp32" in res.output
    # a rerun on the finished stores scores nothing again
    again = runner.invoke(app, [*args[:1], str(cache / "a.zarr"), *args[2:]])
    assert again.exit_code == 0, again.output
    assert "already scored" in again.output


def test_score_command_without_stores_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(app, ["score", str(tmp_path / "empty")])
    assert res.exit_code == 2
    assert "no patch store" in res.output and "cytoscreen tile" in res.output
