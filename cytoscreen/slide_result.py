"""The slide result record: what ``slides/<id>/result.json`` of a results folder holds.

This module is the only one that knows the file's name and layout. ``screen`` writes each
slide's record with :func:`write_result`; everyone who reads a results folder (the summaries,
``qa``, ``calibrate``, the review pages, resume) goes through :func:`read_result` or
:func:`load_results` and gets :class:`SlideResult` records. Whether a slide failed or was
scored is decided by the record (:attr:`SlideResult.failed`, :attr:`SlideResult.state`), and
:func:`match_manifest` is the one rule that pairs a labelled manifest's rows with results.

Format 1 is the only format so far: a ``result.json`` without a ``format`` key (written by
hand, or before the key was checked) is read as format 1. Keys the record does not model are
kept and written back unchanged, so a record round-trips to the same JSON. A file that cannot
be read (not JSON, not a record, a newer format) is refused with :class:`UnreadableResult`,
naming the file and saying how to screen the slide again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from cytoscreen.errors import NotAResultsFolder, UnreadableResult
from cytoscreen.fsutil import write_json_atomic
from cytoscreen.manifest import ManifestRow
from cytoscreen.types import Outcome

RESULT_FORMAT: Literal[1] = 1
RESULT_NAME = "result.json"
SLIDES_DIR = "slides"  # <results>/slides/<id>/ holds one slide's record, field files, pictures
SCORED = "scored"  # the state of a slide screened without a calibration (no outcome)
FAILED = "failed"  # the state of a slide that could not be screened
# A failed slide's record has always listed these (empty) keys in this order, after ``error``.
_FAILED_ORDER = ("outcome", "score", "threshold", "fields")


class SlideResult(BaseModel):
    """One screened slide: where it came from, how it was screened, and what became of it.

    ``status`` is ``ok`` (screened: ``outcome``, or a score only without a calibration) or
    ``failed`` (``error`` says why; no score, no outcome). Fields are declared in the order
    ``screen`` writes them; the sections that are the stages' own records (``domain``,
    ``applicability``, ``scoring``, ``slide``, ...) are kept as written.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    format: Literal[1] = RESULT_FORMAT
    id: str
    path: str | None = None  # the slide file when screened
    relative_path: str | None = None  # its path below the input folder: the display name
    version: str | None = None  # cytoscreen's version
    model_id: str | None = None
    calibration: dict[str, Any] | None = None  # path, sha256, threshold, rule, ... or None
    config_hash: str | None = None  # of the config sections that change a result
    calibration_sha256: str | None = None
    domain_sha256: str | None = None
    slide_key: str | None = None  # content fingerprint of the slide file
    status: Literal["ok", "failed"]
    error: str | None = None
    outcome: Outcome | None = None  # None: failed, or scores only
    threshold: float | None = None
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    score: float | None = None
    rule: str | None = None  # the aggregation rule that made the score
    cellularity: int | None = None  # cells counted on the slide
    obscured: float | None = None  # estimated obscured share of the cell area; None: unknown
    obscured_parts: dict[str, Any] | None = None
    counts: dict[str, int] | None = None  # n_patches, n_scored, n_unreadable, n_fields
    fields: tuple[dict[str, Any], ...] = ()  # the suspicious fields, best first (fields.json)
    domain: dict[str, Any] | None = None  # the domain check's record
    applicability: dict[str, Any] | None = None  # the score check's record
    scoring: dict[str, Any] | None = None  # Scorer.describe(): runtime, precision, device
    slide: dict[str, Any] | None = None  # mpp, mpp_source, backend, target_mpp, patch_size
    cache: str | None = None  # the patch store scored
    timings: dict[str, float] | None = None  # seconds per stage and in total
    started: str | None = None
    finished: str | None = None

    @property
    def failed(self) -> bool:
        """The slide could not be screened: no score, no outcome (``error`` says why)."""
        return self.status != "ok"

    @property
    def state(self) -> str:
        """What became of the slide: ``failed``, its outcome, or ``scored`` (scores only)."""
        if self.failed:
            return FAILED
        return self.outcome.value if self.outcome is not None else SCORED

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to result.json (and listed in results.json): the keys the
        record was made or read with, nothing added."""
        data = self.model_dump(exclude_unset=True)
        if not self.failed:
            return data
        ordered: dict[str, Any] = {}
        for key, value in data.items():
            if key in _FAILED_ORDER:
                ordered.update((k, data[k]) for k in _FAILED_ORDER if k in data)
            else:
                ordered[key] = value
        return ordered


def slide_folder(results_dir: str | Path, slide_id: str) -> Path:
    """Where ``screen`` writes one slide's record, field files and pictures."""
    return Path(results_dir) / SLIDES_DIR / slide_id


def write_result(slide_dir: str | Path, result: SlideResult) -> Path:
    """Write ``result`` into its slide folder (atomically); returns the file written."""
    return write_json_atomic(Path(slide_dir) / RESULT_NAME, result.to_json())


def _unreadable(path: Path, why: str) -> UnreadableResult:
    return UnreadableResult(
        f"not a slide result cytoscreen can read ({why})",
        subject=path,
        hint=f"screen the slide again into this results folder (`cytoscreen screen SLIDES --out "
        f"{path.parent.parent.parent}`): a slide whose result cannot be read is screened again, "
        "finished ones are kept; or delete the slide's folder",
    )


def parse_result(data: Any, path: Path) -> SlideResult:
    """The record in ``data`` (a result.json's JSON value); ``path`` names it in errors."""
    if not isinstance(data, dict):
        raise _unreadable(path, "not a JSON object")
    fmt = data.get("format", RESULT_FORMAT)
    if fmt != RESULT_FORMAT:
        raise _unreadable(path, f"format {fmt!r}; this version of cytoscreen reads {RESULT_FORMAT}")
    try:
        return SlideResult.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors()
        )
        raise _unreadable(path, problems) from None


def read_result(slide_dir: str | Path) -> SlideResult | None:
    """The record in ``slide_dir``; None when there is none. Raises UnreadableResult when the
    file is there but cannot be read."""
    path = Path(slide_dir) / RESULT_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unreadable(path, exc.strerror or type(exc).__name__) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _unreadable(path, f"not valid JSON: {exc}") from None
    return parse_result(data, path)


def load_result_files(results_dir: str | Path) -> list[tuple[Path, SlideResult]]:
    """Every slide's record under ``results_dir`` with the slide folder it was read from, in
    folder-name order. Raises NotAResultsFolder without a ``slides/`` folder and
    UnreadableResult (naming the file) for a record that cannot be read."""
    folder = Path(results_dir) / SLIDES_DIR
    if not folder.is_dir():
        raise NotAResultsFolder(
            f"no {SLIDES_DIR}/ folder here: not the output of `cytoscreen screen`",
            subject=results_dir,
        )
    found = []
    for path in sorted(folder.glob(f"*/{RESULT_NAME}")):
        result = read_result(path.parent)
        if result is not None:  # removed since the folder was listed
            found.append((path.parent, result))
    return found


def load_results(results_dir: str | Path) -> list[SlideResult]:
    """Every slide's record under ``results_dir`` (see :func:`load_result_files`)."""
    return [result for _, result in load_result_files(results_dir)]


def match_manifest(
    rows: Sequence[ManifestRow], results: Sequence[SlideResult]
) -> list[SlideResult | None]:
    """Each manifest row's result, or None when it has none.

    The one rule ``qa`` and ``calibrate`` share: the result screened from the row's file (the
    row's resolved path equals the result's ``path`` resolved), else the result whose slide id
    is the row's ``slide_id``. When several results qualify, the last in ``results`` order
    (folder-name order, as loaded) is taken.
    """
    by_path = {str(Path(r.path).resolve()): r for r in results if r.path}
    by_id = {r.id: r for r in results}
    return [by_path.get(str(row.path)) or by_id.get(row.slide_id) for row in rows]
