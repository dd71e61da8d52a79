"""Issue 7, case 9: the disk fills up during a screen. The error names the path and says what to
do, nothing is marked complete, and a rerun once there is space finishes the job."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cytoscreen.tiling import open_cache


def _mount(point: Path, size: str) -> bool:
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 160 KiB tmpfs (skipped where mounting is not allowed)."""
    point = tmp_path / "disk"
    if shutil.which("mount") is None or not _mount(point, "160k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the ENOSPC simulation still runs")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "slides").glob("*/result.json"))]


def test_real_disk_full_fails_clearly_and_a_rerun_with_space_succeeds(
    small_disk: Path, good_slide: Path, run_screen: Any
) -> None:
    out = small_disk / "out"
    first = run_screen([good_slide], out)
    assert first.exit_code != 0
    text = first.output + "".join(json.dumps(r) for r in _results(out))
    assert "No space left on device" in text, first.output
    assert str(small_disk) in text  # names where it was writing
    assert not any(r.get("status") == "ok" for r in _results(out))
    for store in (out / "cache").glob("*.zarr"):
        assert not open_cache(store).is_complete
    # make room (remount larger) and run again on the same folders
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    second = run_screen([good_slide], out)
    assert second.exit_code == 0, second.output
    (result,) = _results(out)
    assert result["status"] == "ok" and result["outcome"] in ("negative", "review")
    assert open_cache(Path(result["cache"])).is_complete


def test_enospc_while_writing_results_fails_the_slide_naming_the_file(
    tmp_path: Path, good_slide: Path, model_dir: Path, config_path: Path, monkeypatch: Any
) -> None:
    """Where no file system can be mounted: the write layer raises ENOSPC for the field table."""
    import cytoscreen.pipeline as pipeline
    import cytoscreen.stages as stages
    from cytoscreen.config import load_config

    real = stages.write_text_atomic

    def full(path: str | Path, text: str) -> Path:
        if Path(path).name == "fields.csv":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(stages, "write_text_atomic", full)
    cfg = load_config(config_path)
    report = pipeline.screen([good_slide], tmp_path / "out", cfg, model_dir=model_dir)
    (r,) = report.results
    assert r.status == "failed" and report.n_failed == 1
    assert r.error and "No space left on device" in r.error and "fields.csv" in r.error
    assert " -- " in r.error  # says what to do
    monkeypatch.setattr(stages, "write_text_atomic", real)
    report = pipeline.screen([good_slide], tmp_path / "out", cfg, model_dir=model_dir)
    assert report.results[0].status == "ok" and not report.skipped
