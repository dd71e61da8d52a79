"""Issue 7, cases 14 and 16. A second ``screen`` on a results folder that a live run (a real
second process) holds is refused by the lock; once that run is killed with SIGKILL its stale
lock is recovered by the next run. The same input screened twice gives identical decisions,
scores and field rankings."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DRIVER = HERE / "robust_kill_driver.py"
VOLATILE = {"timings", "started", "finished", "cache", "_dir"}  # time and place only


def test_second_screen_refused_then_stale_lock_recovered(
    tmp_path: Path, good_slide: Path, run_screen: Any, model_dir: Path, config_path: Path
) -> None:
    inputs, out, marks = tmp_path / "in", tmp_path / "out", tmp_path / "marks"
    inputs.mkdir()
    marks.mkdir()
    shutil.copy(good_slide, inputs / "s.tiff")
    env = {**os.environ, "ROBUST_MARKS": str(marks), "PYTHONPATH": str(HERE)}
    args = [sys.executable, str(DRIVER), "scoring", str(inputs), str(out)]
    first = subprocess.Popen(
        [*args, str(config_path), str(model_dir)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(marks.iterdir()):  # the first run is scoring (slowly) now
            assert first.poll() is None and time.monotonic() < deadline, "first run never scored"
            time.sleep(0.05)
        second = run_screen([inputs], out)
        assert second.exit_code != 0
        text = " ".join(second.output.split())
        assert "another cytoscreen screen run" in text and f"process {first.pid}" in text
        assert not (out / "slides").exists() or not list((out / "slides").glob("*/result.json"))
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert (out / ".screen.lock").exists()  # left behind by the killed run
    third = run_screen([inputs], out)
    assert third.exit_code == 0, third.output
    assert not (out / ".screen.lock").exists()


def test_same_input_twice_gives_identical_results(
    tmp_path: Path, make_slide: Any, run_screen: Any, slide_results: Any
) -> None:
    inputs = tmp_path / "in"
    make_slide(inputs / "neg.tiff", seed=21)
    make_slide(inputs / "pos.tiff", seed=22, label="positive")
    runs = []
    for name in ("one", "two"):
        result = run_screen([inputs], tmp_path / name)
        assert result.exit_code == 0, result.output
        runs.append(slide_results(tmp_path / name))
    assert set(runs[0]) == set(runs[1]) and len(runs[0]) == 2
    for path, a in runs[0].items():
        b = runs[1][path]
        assert {k: v for k, v in a.items() if k not in VOLATILE} == {
            k: v for k, v in b.items() if k not in VOLATILE
        }
        for f in ("fields.csv", "fields.json", "fields.geojson"):  # scores and ranks of every field
            assert (Path(a["_dir"]) / f).read_bytes() == (Path(b["_dir"]) / f).read_bytes()
        assert a["status"] == "ok" and a["score"] is not None and a["counts"]["n_fields"] > 0
