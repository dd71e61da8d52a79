"""Labelled slide-set manifests (see ``data_manifests/README.md``): read and validate.

Every problem of every row (missing column, empty or duplicate id, unknown label or Bethesda
category, a path leaving the data root, a missing file) is collected first and reported in one
:class:`~cytoscreen.errors.BadManifest`, so a manifest is fixed in one pass before any work
starts. A UTF-8 byte-order mark and CRLF line ends are accepted.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from cytoscreen.errors import BadManifest

REQUIRED_COLUMNS = ("slide_id", "path", "label")
KNOWN_COLUMNS = (
    *REQUIRED_COLUMNS,
    "worst_bethesda",
    "site",
    "split",
    "ground_truth",
    "notes",
)
LABELS = ("negative", "positive", "blank")
# Severity order; AGC (glandular) is kept apart from the squamous ladder but counts as abnormal.
BETHESDA = ("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC", "AGC")
MAX_LISTED = 50


@dataclass(frozen=True)
class ManifestRow:
    line: int  # line number in the file (the header is line 1)
    slide_id: str
    path: Path  # resolved, inside the data root
    relative: str  # as written in the manifest
    label: str  # negative | positive | blank
    worst_bethesda: str  # "" when unknown
    site: str
    split: str
    ground_truth: Path | None  # resolved cell truth (<slide>.cells.json), when given
    notes: str
    # every other column as written (e.g. prep, n_cells, n_abnormal, stain of a generated set)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def positive(self) -> bool:
        return self.label == "positive"


@dataclass(frozen=True)
class Manifest:
    path: Path
    root: Path  # the data root every row's files must stay inside
    rows: tuple[ManifestRow, ...]

    @property
    def name(self) -> str:
        return self.path.name

    def sites(self) -> tuple[str, ...]:
        return tuple(sorted({r.site for r in self.rows}))


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadManifest(f"cannot read the manifest ({exc})", subject=path) from None
    try:
        return raw.decode("utf-8-sig")  # strips a byte-order mark
    except UnicodeDecodeError as exc:
        raise BadManifest(
            f"not UTF-8 text ({exc})", subject=path, hint="save the manifest as UTF-8 CSV"
        ) from None


def _path_problem(written: str, root: Path) -> tuple[Path | None, str | None]:
    """The resolved path of ``written`` (relative to ``root``), or why it is refused."""
    if not written:
        return None, "empty path"
    if PurePosixPath(written).is_absolute() or PureWindowsPath(written).is_absolute():
        return None, f"path {written!r} is absolute (write it relative to the manifest)"
    parts = PurePosixPath(written.replace("\\", "/")).parts
    if ".." in parts:
        return None, f"path {written!r} climbs out with '..'"
    resolved = (root / Path(*parts)).resolve()
    if not resolved.is_relative_to(root):
        return None, f"path {written!r} leads outside the data root {root} (symlink)"
    return resolved, None


def read_manifest(
    manifest: str | Path,
    *,
    data_root: str | Path | None = None,
    check_files: bool = True,
) -> Manifest:
    """Read and validate a labelled manifest; raise one BadManifest listing every problem.

    Paths are relative to ``data_root`` (default: the manifest's folder) and must stay inside
    it. ``check_files=False`` skips the existence check of slide files (QA and calibration
    work from results and need no slide); ground-truth files given are always checked.
    """
    path = Path(manifest)
    root = Path(data_root).resolve() if data_root is not None else path.resolve().parent
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    columns = [c.strip() for c in reader.fieldnames or ()]
    reader.fieldnames = columns
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise BadManifest(
            f"missing column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'})",
            subject=path,
            hint="see data_manifests/README.md for the manifest format",
        )
    problems: list[str] = []
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(reader):
        line = i + 2
        cell = {k: (v or "").strip() for k, v in raw.items() if isinstance(k, str)}
        sid = cell["slide_id"]
        where = f"line {line} ({sid or 'no id'})"
        mine: list[str] = []
        if None in raw:
            mine.append("more fields than columns")
        if not sid:
            mine.append("empty slide_id")
        elif sid in seen:
            mine.append(f"duplicate slide_id (first on line {seen[sid]})")
        else:
            seen[sid] = line
        label = cell["label"]
        if label not in LABELS:
            mine.append(f"label {label!r} is not one of {', '.join(LABELS)}")
        bethesda = cell.get("worst_bethesda", "").upper()
        if bethesda and bethesda not in BETHESDA:
            mine.append(f"worst_bethesda {bethesda!r} is not one of {', '.join(BETHESDA)}")
        elif label == "negative" and bethesda not in ("", "NILM"):
            mine.append(f"label negative but worst_bethesda {bethesda}")
        elif label == "positive" and bethesda == "NILM":
            mine.append("label positive but worst_bethesda NILM")
        slide_path, why = _path_problem(cell["path"], root)
        if why:
            mine.append(why)
        elif check_files and slide_path is not None and not slide_path.is_file():
            mine.append(f"slide file {cell['path']!r} not found")
        truth: Path | None = None
        if cell.get("ground_truth"):
            truth, why = _path_problem(cell["ground_truth"], root)
            if why:
                mine.append(f"ground_truth: {why}")
            elif truth is not None and not truth.is_file():
                mine.append(f"ground_truth file {cell['ground_truth']!r} not found")
        problems += [f"{where}: {m}" for m in mine]
        if not mine and slide_path is not None:
            rows.append(
                ManifestRow(
                    line=line,
                    slide_id=sid,
                    path=slide_path,
                    relative=cell["path"],
                    label=label,
                    worst_bethesda=bethesda,
                    site=cell.get("site", "") or "unspecified",
                    split=cell.get("split", ""),
                    ground_truth=truth,
                    notes=cell.get("notes", ""),
                    extra={k: v for k, v in cell.items() if k not in KNOWN_COLUMNS},
                )
            )
    if problems:
        listed = problems[:MAX_LISTED]
        more = len(problems) - len(listed)
        raise BadManifest(
            f"{len(problems)} problem(s):\n  "
            + "\n  ".join(listed)
            + (f"\n  ... and {more} more" if more else ""),
            subject=path,
        )
    if not rows:
        raise BadManifest("no slide rows", subject=path, hint="add one row per labelled slide")
    return Manifest(path=path.resolve(), root=root, rows=tuple(rows))
