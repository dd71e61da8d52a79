"""The pathologist's marks on ranked fields, kept in ``RESULTS/reviews.sqlite``.

Every mark is committed as it is made (a restart loses nothing). Each reviewer has one current
mark per field; changing it overwrites it and the earlier one stays in ``mark_history``.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from cytoscreen.errors import CytoscreenError

DB_NAME = "reviews.sqlite"
LABELS = ("abnormal", "normal", "artefact", "unsure")
BETHESDA_ABNORMAL = ("ASC-US", "LSIL", "ASC-H", "HSIL", "SCC", "AGC")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS marks (
    slide_id TEXT NOT NULL,
    rank INTEGER NOT NULL,
    reviewer TEXT NOT NULL,
    label TEXT NOT NULL,
    bethesda TEXT,
    model_id TEXT NOT NULL,
    marked_at TEXT NOT NULL,
    x0 INTEGER NOT NULL, y0 INTEGER NOT NULL, x1 INTEGER NOT NULL, y1 INTEGER NOT NULL,
    PRIMARY KEY (slide_id, rank, reviewer)
);
CREATE TABLE IF NOT EXISTS mark_history (
    slide_id TEXT NOT NULL, rank INTEGER NOT NULL, reviewer TEXT NOT NULL,
    label TEXT NOT NULL, bethesda TEXT, model_id TEXT NOT NULL, marked_at TEXT NOT NULL,
    x0 INTEGER NOT NULL, y0 INTEGER NOT NULL, x1 INTEGER NOT NULL, y1 INTEGER NOT NULL
);
"""


class BadMark(CytoscreenError):
    default_hint = (
        f"a mark is one of {', '.join(LABELS)}; abnormal needs a Bethesda category "
        f"({', '.join(BETHESDA_ABNORMAL)})"
    )


@dataclass(frozen=True)
class Mark:
    slide_id: str
    rank: int
    label: str
    bethesda: str | None
    reviewer: str
    model_id: str
    marked_at: str  # ISO 8601, UTC
    x0: int
    y0: int
    x1: int
    y1: int


# the mark's fields, in order: the database's column list and the CSV export's header
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Mark))
_COLS = ", ".join(COLUMNS)


def check_mark(label: str, bethesda: str | None, reviewer: str, subject: str) -> None:
    """Raise ``BadMark`` naming ``subject`` (the slide) unless the mark is complete."""
    if label not in LABELS:
        raise BadMark(f"unknown mark {label!r}", subject=subject)
    if label == "abnormal" and bethesda not in BETHESDA_ABNORMAL:
        raise BadMark(f"abnormal field without a Bethesda category ({bethesda!r})", subject=subject)
    if label != "abnormal" and bethesda:
        raise BadMark(f"a Bethesda category goes with abnormal only, not {label}", subject=subject)
    if not reviewer.strip():
        raise BadMark("no reviewer name", subject=subject, hint="start with --reviewer NAME")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class MarkStore:
    """The SQLite file of marks. Safe to share between the server's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise CytoscreenError(
                f"cannot open the review database ({exc})",
                subject=self.path,
                hint="check that the results folder is writable and not on a read-only share",
            ) from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MarkStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, mark: Mark) -> None:
        """Store (or replace) a reviewer's mark on a field, committed at once."""
        check_mark(mark.label, mark.bethesda, mark.reviewer, mark.slide_id)
        row = tuple(asdict(mark)[k] for k in COLUMNS)
        marks = ",".join("?" * len(COLUMNS))
        with self._db:  # one transaction: BEGIN ... COMMIT
            self._db.execute("BEGIN")
            self._db.execute(f"INSERT OR REPLACE INTO marks ({_COLS}) VALUES ({marks})", row)
            self._db.execute(f"INSERT INTO mark_history ({_COLS}) VALUES ({marks})", row)

    def delete(self, slide_id: str, rank: int, reviewer: str) -> bool:
        cur = self._db.execute(
            "DELETE FROM marks WHERE slide_id=? AND rank=? AND reviewer=?",
            (slide_id, rank, reviewer),
        )
        return cur.rowcount > 0

    def marks(self, slide_id: str | None = None, reviewer: str | None = None) -> list[Mark]:
        """Current marks, by slide then rank then reviewer."""
        sql, args = f"SELECT {_COLS} FROM marks WHERE 1=1", []
        if slide_id is not None:
            sql += " AND slide_id=?"
            args.append(slide_id)
        if reviewer is not None:
            sql += " AND reviewer=?"
            args.append(reviewer)
        rows = self._db.execute(sql + " ORDER BY slide_id, rank, reviewer", args).fetchall()
        return [Mark(**dict(zip(COLUMNS, r, strict=True))) for r in rows]

    def history_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM mark_history").fetchone()[0])


def marks_csv(marks: list[Mark]) -> str:
    """The marks as CSV (COLUMNS, level-0 pixel boxes)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for m in marks:
        row = asdict(m)
        row["bethesda"] = row["bethesda"] or ""
        writer.writerow({k: row[k] for k in COLUMNS})
    return buf.getvalue()


def open_store(results: str | Path) -> MarkStore:
    return MarkStore(Path(results) / DB_NAME)
