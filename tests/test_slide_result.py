"""The slide result record: one writer, one loader, old folders read, bad files refused by
name, and the one manifest matcher of ``qa`` and ``calibrate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cytoscreen.calibration import calibrate_from_results
from cytoscreen.errors import NotAResultsFolder, UnreadableResult
from cytoscreen.manifest import read_manifest
from cytoscreen.qa.collect import collect_run
from cytoscreen.slide_result import (
    RESULT_NAME,
    SlideResult,
    load_result_files,
    load_results,
    match_manifest,
    read_result,
    slide_folder,
    write_result,
)
from cytoscreen.types import Outcome

# as ``screen`` writes them (key order included), with a key the record does not model
SCORED: dict[str, Any] = {
    "format": 1, "id": "a-00000001", "path": "/data/a.svs", "relative_path": "a.svs",
    "version": "0.1.0", "model_id": "m-1", "calibration": {"path": "/c.json", "threshold": 0.5},
    "config_hash": "h", "calibration_sha256": "c", "domain_sha256": None, "slide_key": "k",
    "status": "ok", "error": None, "outcome": "review", "threshold": 0.5,
    "reasons": ["score 0.9 >= threshold 0.5 (max)"], "warnings": [], "score": 0.9,
    "rule": "max", "cellularity": 7000, "obscured": 0.1,
    "obscured_parts": {"share": 0.1, "blood": 0.05, "thick": 0.05},
    "counts": {"n_patches": 12, "n_scored": 12, "n_unreadable": 0, "n_fields": 1},
    "fields": [{"rank": 1, "score": 0.9, "x0": 1, "y0": 2, "x1": 3, "y1": 4}],
    "domain": {"checked": False, "shift": None}, "applicability": None,
    "scoring": {"runtime": "torch", "precision": "fp32", "device": "cpu"},
    "slide": {"mpp": 0.25, "backend": "tiffslide"}, "cache": "/cache/k.zarr",
    "timings": {"tiling": 1.5, "total": 2.0}, "started": "2025-01-01T00:00:00+00:00",
    "finished": "2025-01-01T00:00:02+00:00", "stage_zero": {"kept": 3},
}  # fmt: skip
FAILED: dict[str, Any] = {
    "format": 1, "id": "b-00000002", "path": "/data/b.svs", "relative_path": "b.svs",
    "version": "0.1.0", "model_id": "m-1", "calibration": None, "config_hash": "h",
    "calibration_sha256": None, "domain_sha256": None, "status": "failed",
    "error": "b.svs: not a slide -- check the file", "outcome": None, "score": None,
    "threshold": None, "fields": [], "timings": {"total": 0.1},
    "started": "2025-01-01T00:00:00+00:00", "finished": "2025-01-01T00:00:00+00:00",
}  # fmt: skip
# the shape of the first screen's records: no format key, no domain, scoring or obscured
OLD: dict[str, Any] = {
    "id": "c-00000003", "path": "/data/c.svs", "relative_path": "c.svs", "version": "0.0.1",
    "model_id": "m-0", "calibration": None, "status": "ok", "error": None, "outcome": None,
    "threshold": None, "reasons": ["scores only: no calibration was used"], "warnings": [],
    "score": 0.3, "rule": "max", "cellularity": 9000, "counts": {"n_patches": 5},
    "fields": [], "slide": {"mpp": 0.5}, "cache": "/cache/c.zarr",
}  # fmt: skip


def _folder(root: Path, *results: dict[str, Any]) -> Path:
    for r in results:
        d = slide_folder(root, r["id"])
        d.mkdir(parents=True)
        (d / RESULT_NAME).write_text(json.dumps(r, indent=2), "utf-8")
    return root


@pytest.mark.parametrize("data", [SCORED, FAILED, OLD], ids=["scored", "failed", "old"])
def test_a_record_is_written_back_byte_for_byte(tmp_path: Path, data: dict[str, Any]) -> None:
    written = json.dumps(data, indent=2) + "\n"  # what write_json_atomic makes of it
    (tmp_path / RESULT_NAME).write_text(written, "utf-8")
    record = read_result(tmp_path)
    assert record is not None
    out = tmp_path / "again"
    write_result(out, record)
    assert (out / RESULT_NAME).read_text("utf-8") == written  # keys, order and values kept
    assert read_result(out) == record


def test_failed_scored_and_the_state_are_the_records() -> None:
    scored, failed, old = (SlideResult.model_validate(d) for d in (SCORED, FAILED, OLD))
    assert not scored.failed and scored.state == "review" and scored.outcome is Outcome.REVIEW
    assert failed.failed and failed.state == "failed" and failed.score is None
    assert not old.failed and old.state == "scored"  # a scores-only run: no outcome
    assert scored.model_extra == {"stage_zero": {"kept": 3}}  # kept, not dropped


def test_an_old_results_folder_is_read(tmp_path: Path) -> None:
    root = _folder(tmp_path, OLD, FAILED)
    results = load_results(root)
    assert [r.id for r in results] == ["b-00000002", "c-00000003"]  # folder-name order
    old = results[1]
    assert old.format == 1 and old.domain is None and old.scoring is None and old.obscured is None
    assert "format" not in old.to_json()  # nothing added when it is written back
    assert [d.name for d, _ in load_result_files(root)] == ["b-00000002", "c-00000003"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"id": "x", "status": "o', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"id": "x"}', "status"),
        ('{"id": "x", "status": "done"}', "status"),
        ('{"id": "x", "status": "ok", "outcome": "maybe"}', "outcome"),
        ('{"format": 2, "id": "x", "status": "ok"}', "format 2"),
    ],
)
def test_an_unreadable_result_is_refused_naming_the_file(
    tmp_path: Path, content: str, words: str
) -> None:
    root = _folder(tmp_path, SCORED)
    bad = slide_folder(root, "x") / RESULT_NAME
    bad.parent.mkdir()
    bad.write_text(content, "utf-8")
    with pytest.raises(UnreadableResult) as err:
        load_results(root)
    text = str(err.value)
    assert text.startswith(f"{bad}:") and words in text
    assert "cytoscreen screen" in text and f"--out {root}" in text  # how to re-run


def test_a_folder_without_slides_is_not_a_results_folder(tmp_path: Path) -> None:
    with pytest.raises(NotAResultsFolder, match=str(tmp_path)):
        load_results(tmp_path)
    assert read_result(tmp_path) is None  # no record here: nothing to refuse


def _manifest(root: Path, rows: list[str]) -> Path:
    (root / "slides").mkdir(parents=True, exist_ok=True)
    for name in ("a.svs", "b.svs", "d.svs"):
        (root / "slides" / name).write_bytes(b"x")
    path = root / "m.csv"
    path.write_text("\n".join(["slide_id,path,label", *rows]) + "\n", "utf-8")
    return path


def test_the_manifest_matcher_takes_the_path_first_then_the_slide_id(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rows_text = ["a,slides/a.svs,positive", "b,slides/b.svs,negative"]
    path = _manifest(
        data, [*rows_text, "d-00000004,slides/d.svs,negative", "e,slides/d.svs,negative"]
    )
    slides = data / "slides"
    results = [
        # screened from a.svs, under another id: found by path
        SlideResult(id="other-00000001", path=str(slides / "a.svs"), status="ok"),
        # the id "b" but screened from another file: the path of row b matches no result,
        # so the id does
        SlideResult(id="b", path="/elsewhere/b.svs", status="ok"),
        # d.svs by path for both rows that name it; "d-00000004" would match by id too
        SlideResult(id="d-00000004", path=str(slides / "x" / ".." / "d.svs"), status="failed"),
    ]
    rows = read_manifest(path, check_files=False).rows
    matched = match_manifest(rows, results)
    assert [m.id if m else None for m in matched] == ["other-00000001", "b", "d-00000004",
                                                       "d-00000004"]  # fmt: skip
    # a path match wins over an id match
    by_id = SlideResult(id="a", path="/elsewhere/a.svs", status="ok")
    assert match_manifest(rows[:1], [by_id, results[0]])[0] == results[0]
    assert match_manifest(rows[:1], [by_id])[0] == by_id
    assert match_manifest(rows[:1], []) == [None]


def test_qa_and_calibrate_match_the_same_rows(tmp_path: Path) -> None:
    """A row found only by its slide id counts in both commands (calibrate once matched by
    path only)."""
    data = tmp_path / "data"
    path = _manifest(data, ["a,slides/a.svs,positive", "b,slides/b.svs,negative"])
    rec = {"status": "ok", "model_id": "m", "rule": "max", "threshold": None, "outcome": None}
    results = _folder(
        tmp_path / "results",
        {**rec, "id": "a", "path": "/moved/a.svs", "score": 0.9},  # by id
        {**rec, "id": "b-1", "path": str(data / "slides" / "b.svs"), "score": 0.1},  # by path
    )
    qa = collect_run(read_manifest(path, check_files=False), results)
    assert [(s.row.slide_id, s.status, s.score) for s in qa.slides] == [
        ("a", "ok", 0.9),
        ("b", "ok", 0.1),
    ]
    run = calibrate_from_results(path, results, tmp_path / "c.json", applicability_limit=None)
    assert run.used == ("a", "b") and run.left_out == ()
