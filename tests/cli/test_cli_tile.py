from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from cytoscreen.cli import app
from cytoscreen.tiling import open_cache

DATA = Path(__file__).resolve().parents[1] / "data"


def test_tile_command_caches_good_slides_and_reports_a_bad_one(tmp_path: Path) -> None:
    slide = tmp_path / "CMU-1-Small-Region.svs"
    shutil.copy(DATA / "CMU-1-Small-Region.svs", slide)
    bad = tmp_path / "bad.svs"
    bad.write_text("not a slide")
    out = tmp_path / "cache"
    res = CliRunner().invoke(app, ["tile", str(slide), str(bad), "--out", str(out)])
    assert res.exit_code == 1, res.output  # the bad file failed, the good one was tiled
    stores = sorted(out.glob("*.zarr"))
    assert len(stores) == 1
    cache = open_cache(stores[0])
    assert cache.is_complete and len(cache.coords) > 0
    assert "bad.svs" in res.output and "not a readable whole-slide image" in res.output
    # the table reports the good slide's patch count and store
    assert f"{len(cache.coords)} " in res.output and stores[0].name[:20] in res.output
    assert (out / "config.resolved.yaml").is_file()
