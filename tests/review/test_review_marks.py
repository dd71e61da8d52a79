"""The review database: marks, replacement, persistence, export, validation."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from cytoscreen.review.marks import BadMark, Mark, MarkStore, marks_csv, open_store


def _mark(label: str = "abnormal", bethesda: str | None = "HSIL", **kw: object) -> Mark:
    base: dict[str, object] = dict(
        slide_id="s-1", rank=1, label=label, bethesda=bethesda, reviewer="dr a",
        model_id="m1", marked_at="2025-01-01T00:00:00+00:00", x0=1, y0=2, x1=3, y1=4,
    )  # fmt: skip
    base.update(kw)
    return Mark(**base)  # type: ignore[arg-type]


def test_marks_persist_across_reopening(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.put(_mark())
        store.put(_mark("normal", None, rank=2))
    with MarkStore(tmp_path / "reviews.sqlite") as again:
        got = again.marks()
    assert [(m.rank, m.label, m.bethesda) for m in got] == [
        (1, "abnormal", "HSIL"),
        (2, "normal", None),
    ]
    assert got[0] == _mark()


def test_a_new_mark_replaces_the_reviewers_old_one_and_keeps_history(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.put(_mark())
        store.put(_mark("artefact", None, marked_at="2025-01-02T00:00:00+00:00"))
        store.put(_mark("unsure", None, reviewer="dr b"))
        assert [(m.reviewer, m.label) for m in store.marks()] == [
            ("dr a", "artefact"),
            ("dr b", "unsure"),
        ]
        assert store.history_count() == 3
        assert store.delete("s-1", 1, "dr a") and not store.delete("s-1", 1, "dr a")
        assert [m.reviewer for m in store.marks(slide_id="s-1")] == ["dr b"]


@pytest.mark.parametrize(
    ("label", "bethesda", "reviewer"),
    [("abnormal", None, "dr a"), ("abnormal", "NILM", "dr a"), ("normal", "HSIL", "dr a"),
     ("weird", None, "dr a"), ("normal", None, "  ")],
)  # fmt: skip
def test_incomplete_marks_are_refused_naming_the_slide(
    tmp_path: Path, label: str, bethesda: str | None, reviewer: str
) -> None:
    with open_store(tmp_path) as store, pytest.raises(BadMark, match="s-1"):
        store.put(_mark(label, bethesda, reviewer=reviewer))
    with open_store(tmp_path) as store:
        assert store.marks() == []


def test_export_csv_round_trips(tmp_path: Path) -> None:
    marks = [_mark(), _mark("normal", None, slide_id='odd, "name"', rank=3)]
    rows = list(csv.DictReader(io.StringIO(marks_csv(marks))))
    assert [r["slide_id"] for r in rows] == ["s-1", 'odd, "name"']
    assert rows[0]["bethesda"] == "HSIL" and rows[1]["bethesda"] == ""
    assert (rows[1]["rank"], rows[1]["x1"], rows[1]["model_id"]) == ("3", "3", "m1")
