"""Batch plumbing: slide discovery and ids, the run lock, crash isolation, CSV quoting."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cytoscreen.batch import ChildCrashed, RunLock, find_slides, run_isolated, slide_id
from cytoscreen.batch.lock import LOCK_NAME, UNREADABLE_GRACE_S
from cytoscreen.errors import CytoscreenError, RunLocked, UnreadableSlide
from cytoscreen.outputs.summary import SUMMARY_COLUMNS, summary_csv
from cytoscreen.slide_result import SlideResult


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_discovery_finds_slides_recursively_and_skips_side_files(tmp_path: Path) -> None:
    for rel in (
        "a/s1.svs",
        "a/b/s2.NDPI",
        "s3.ome.tiff",
        "s4.mrxs",
        "notes.txt",
        "a/s1.cells.json",
        "a/s1.geojson",
        ".hidden/s5.svs",
        "s4/Data0001.dat",
    ):
        _touch(tmp_path / rel)
    found = sorted(s.relative for s in find_slides([tmp_path]))
    assert found == ["a/b/s2.NDPI", "a/s1.svs", "s3.ome.tiff", "s4.mrxs"]


def test_ids_are_safe_and_distinct_for_duplicates_and_case(tmp_path: Path) -> None:
    for rel in ("x/slide 1.svs", "y/slide 1.svs", "z/Case.tif", "z/case.tif", "z/ä$b.tif"):
        _touch(tmp_path / rel)
    slides = find_slides([tmp_path])
    ids = [s.id for s in slides]
    assert len(set(ids)) == len(ids) == 5
    assert len({i.lower() for i in ids}) == 5  # distinct on case-insensitive file systems too
    for i in ids:
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in i), i
    assert slide_id("x/slide 1.svs").startswith("slide_1-")
    # ids depend on the path below the input folder, so they survive moving the folder
    assert slide_id("x/slide 1.svs") == next(s.id for s in slides if s.relative == "x/slide 1.svs")


def test_same_name_given_as_files_from_two_folders_gets_two_ids(tmp_path: Path) -> None:
    a, b = _touch(tmp_path / "a" / "s.svs"), _touch(tmp_path / "b" / "s.svs")
    slides = find_slides([a, b, a])
    assert len(slides) == 2 and slides[0].id != slides[1].id


def test_missing_input_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSlide, match="nope"):
        find_slides([tmp_path / "nope"])


def test_lock_refuses_a_second_holder_and_releases(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(CytoscreenError, match=str(os.getpid())) as err:
            RunLock(tmp_path).acquire()
        assert "delete" in str(err.value)
    assert not (tmp_path / LOCK_NAME).exists()


def test_stale_lock_of_a_dead_process_is_recovered(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"})
    )
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_lock_from_another_host_is_not_taken_over(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
    with pytest.raises(CytoscreenError, match="elsewhere"):
        RunLock(tmp_path).acquire()


@pytest.mark.parametrize("content", [b"", b'{"pid": 12', b"\xff\xfe not json", b"[1, 2]"])
def test_empty_or_unreadable_lock_is_taken_over_at_once(tmp_path: Path, content: bytes) -> None:
    (tmp_path / LOCK_NAME).write_bytes(content)  # left by a crash: fresh mtime, no content
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file left behind


def test_without_hard_links_a_fresh_empty_lock_waits_out_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    lock = tmp_path / LOCK_NAME
    lock.write_bytes(b"")  # may be a run between O_EXCL create and its write
    with pytest.raises(RunLocked, match="delete"):
        RunLock(tmp_path).acquire()
    old = time.time() - UNREADABLE_GRACE_S - 5
    os.utime(lock, (old, old))
    with RunLock(tmp_path) as held:
        assert not held.linked
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_native_crash_in_child_becomes_an_error_naming_the_slide() -> None:
    with pytest.raises(ChildCrashed, match="SIGABRT") as err:
        run_isolated(os.abort, slide="crashy.svs")
    assert str(err.value).startswith("crashy.svs:")


def test_child_errors_come_back_with_their_class(tmp_path: Path) -> None:
    from cytoscreen.io import open_slide

    junk = tmp_path / "junk.svs"
    junk.write_bytes(b"junk" * 64)
    with pytest.raises(UnreadableSlide, match="junk.svs"):
        run_isolated(open_slide, junk, slide=str(junk))
    assert run_isolated(divmod, 7, 2, slide="-") == (3, 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_child_exits_when_the_process_that_started_it_dies(tmp_path: Path) -> None:
    """A killed screen (or dask worker) leaves no slide reader writing on: its child exits."""
    pids = tmp_path / "pids"
    script = (
        "import os\n"
        "from cytoscreen.batch import run_isolated\n"
        f"run_isolated(os.system, 'echo $$ $PPID > {pids}.tmp; mv {pids}.tmp {pids}; "
        "exec sleep 60', slide='-')\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    shell = child = 0
    try:
        deadline = time.monotonic() + 60
        while not pids.exists():
            assert time.monotonic() < deadline and parent.poll() is None, "no child started"
            time.sleep(0.05)
        shell, child = map(int, pids.read_text().split())  # the sleep, and the child running it
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the child outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in (shell, child):  # processes this test started, by their ids
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (not a zombie awaiting its parent). A process that ends between the open and
    the read of its stat file raises ProcessLookupError: gone, too."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def test_summary_csv_quotes_commas_quotes_and_newlines() -> None:
    nasty = 'dir, with "quotes"\nand a newline/slide,1.svs'
    rows: list[dict[str, Any]] = [
        {"id": "a", "path": nasty, "status": "failed", "error": 'bad "file", really', "fields": []},
        {
            "id": "b",
            "path": "/p/b.svs",
            "status": "ok",
            "outcome": "review",
            "score": 0.9,
            "threshold": 0.5,
            "cellularity": 7000,
            "counts": {"n_patches": 12},
            "fields": [{"x0": 1, "y0": 2, "x1": 3, "y1": 4}],
            "timings": {"total": 1.5},
        },
    ]
    records = [SlideResult.model_validate(r) for r in rows]
    parsed = list(csv.DictReader(io.StringIO(summary_csv(records))))
    assert tuple(parsed[0]) == SUMMARY_COLUMNS
    assert parsed[0]["path"] == nasty and parsed[0]["error"] == 'bad "file", really'
    assert parsed[1]["top_field"] == "1;2;3;4" and parsed[1]["score"] == "0.9"


def test_a_dicom_series_folder_is_one_slide(tmp_path: Path) -> None:
    for rel in (
        "cases/1.2.826.0.1.9/level-0.dcm",  # a folder named by its series UID
        "cases/1.2.826.0.1.9/level-1.DCM",
        "cases/1.2.826.0.1.9/label.dcm",
        "cases/1.2.826.0.1.9/deeper/other.dcm",  # a sub-folder is a slide of its own
        "cases/s1.svs",
        "flat.dcm",  # .dcm files right in the input folder: the input folder is the slide
    ):
        _touch(tmp_path / rel)
    slides = {s.relative: s for s in find_slides([tmp_path])}
    assert sorted(slides) == [
        "cases/1.2.826.0.1.9",
        "cases/1.2.826.0.1.9/deeper",
        "cases/s1.svs",
        tmp_path.name,
    ]
    series = slides["cases/1.2.826.0.1.9"]
    assert series.path == (tmp_path / "cases" / "1.2.826.0.1.9").resolve()
    assert series.id.startswith("1.2.826.0.1.9-")  # the whole folder name, dots and all
    assert slides[tmp_path.name].path == tmp_path.resolve()


def test_dcm_files_given_directly_name_their_series_folder(tmp_path: Path) -> None:
    a = _touch(tmp_path / "slideA" / "level-0.dcm")
    b = _touch(tmp_path / "slideA" / "level-1.dcm")
    slides = find_slides([a, b, tmp_path / "slideA"])
    assert [(s.path, s.relative) for s in slides] == [((tmp_path / "slideA").resolve(), "slideA")]
