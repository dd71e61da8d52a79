"""Issue 7, case 8: ``kill -9`` during tiling and during scoring, then a rerun. What finished
before the kill is kept as it was, a partial cache is never taken as complete, and the rerun's
outputs are identical to those of a run that was never interrupted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from cytoscreen.tiling import open_cache

HERE = Path(__file__).parent
DRIVER = HERE / "robust_kill_driver.py"
COMPARED = ("fields.csv", "fields.json", "fields.geojson")
# result.json keys that legitimately differ between runs (time, place)
VOLATILE = {"timings", "started", "finished", "cache", "path"}


def _drive(mode: str, inputs: Path, out: Path, config: Path, model: Path, marks: Path) -> Any:
    env = {**os.environ, "ROBUST_MARKS": str(marks), "PYTHONPATH": str(HERE)}
    return subprocess.Popen(
        [sys.executable, str(DRIVER), mode, str(inputs), str(out), str(config), str(model)],
        env=env,
        start_new_session=True,  # its own process group: the kill takes the tiling child too
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _kill_after(proc: Any, marks: Path, prefix: str, count: int, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while len(list(marks.glob(f"{prefix}-*"))) < count:
        if proc.poll() is not None:
            raise AssertionError(f"run ended before the kill:\n{proc.stdout.read().decode()}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("the run never reached the kill point")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _finish(inputs: Path, out: Path, config: Path, model: Path, marks: Path) -> None:
    proc = _drive("plain", inputs, out, config, model, marks)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output.decode()


def _result(out: Path, name: str) -> tuple[Path, dict[str, Any]] | None:
    for p in (out / "slides").glob("*/result.json"):
        r = json.loads(p.read_text(encoding="utf-8"))
        if Path(r["path"]).name == name:
            return p.parent, r
    return None


def _assert_same_as_clean(clean: Path, rerun: Path, name: str) -> None:
    a, b = _result(clean, name), _result(rerun, name)
    assert a is not None and b is not None
    (da, ra), (db, rb) = a, b
    for f in COMPARED:
        assert (da / f).read_bytes() == (db / f).read_bytes(), f
    assert {k: v for k, v in ra.items() if k not in VOLATILE} == {
        k: v for k, v in rb.items() if k not in VOLATILE
    }
    ga, gb = zarr.open_group(ra["cache"], mode="r"), zarr.open_group(rb["cache"], mode="r")
    for arr in ("images", "valid", "nuclei", f"scores/{ra['model_id']}/prob"):
        assert np.array_equal(np.asarray(ga[arr][:]), np.asarray(gb[arr][:]), equal_nan=True)  # type: ignore[index]


@pytest.fixture(scope="module")
def kill_setup(
    tmp_path_factory: pytest.TempPathFactory,
    make_slide: Any,
    write_config: Any,
    model_dir: Path,
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kill")
    inputs = root / "in"
    make_slide(inputs / "a.tiff", seed=11)
    make_slide(inputs / "slow.tiff", seed=12)
    config = write_config(root / "c.yaml", cache={"chunk_patches": 16, "scheduler": "synchronous"})
    marks = root / "marks"
    marks.mkdir()
    _finish(inputs, root / "clean", config, model_dir, marks)
    return {"root": root, "in": inputs, "config": config, "clean": root / "clean"}


@pytest.mark.parametrize("stage", ["tiling", "scoring"])
def test_kill_9_then_rerun_matches_a_clean_run(
    kill_setup: dict[str, Path], model_dir: Path, tmp_path: Path, stage: str
) -> None:
    inputs, config = kill_setup["in"], kill_setup["config"]
    out, marks = tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    if stage == "tiling":
        run = inputs  # a.tiff finishes first; slow.tiff is killed while being tiled
    else:
        run = tmp_path / "one"  # one slide, killed between two scored chunks
        run.mkdir()
        shutil.copy(inputs / "slow.tiff", run / "slow.tiff")
    proc = _drive(stage, run, out, config, model_dir, marks)
    _kill_after(proc, marks, "tiled" if stage == "tiling" else "scored", 2)

    assert _result(out, "slow.tiff") is None  # nothing recorded as finished
    stores = list((out / "cache").glob("*.zarr"))
    slow = [s for s in stores if open_cache(s).attrs.slide_name == "slow.tiff"]
    assert len(slow) == 1
    partial = open_cache(slow[0])
    assert not partial.is_complete if stage == "tiling" else partial.is_complete
    if stage == "scoring":
        scored = list((slow[0] / "scores").iterdir())
        assert scored and not any((d / "COMPLETE").exists() for d in scored)
    before = _result(out, "a.tiff")
    a_bytes = (before[0] / "result.json").read_bytes() if before else None
    if stage == "tiling":
        assert before is not None and before[1]["status"] == "ok"

    _finish(run, out, config, model_dir, tmp_path / "marks")  # the rerun (also frees the lock)
    _assert_same_as_clean(kill_setup["clean"], out, "slow.tiff")
    assert open_cache(slow[0]).is_complete
    if a_bytes is not None:  # finished before the kill: skipped by the rerun, untouched
        after = _result(out, "a.tiff")
        assert after is not None and (after[0] / "result.json").read_bytes() == a_bytes
