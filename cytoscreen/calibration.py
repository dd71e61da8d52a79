"""``cytoscreen calibrate``: choose the threshold from screened, labelled slides.

Reads a manifest (``slide_id,path,label``; validated by :func:`cytoscreen.manifest.read_manifest`,
every row's problems reported together), matches its rows to the ``result.json`` files of a
``cytoscreen screen`` run by slide path, and calibrates the aggregation rule those results
used (the maths is :func:`cytoscreen.slide.calibrate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytoscreen.batch import file_sha256, read_json_object, write_text_atomic
from cytoscreen.errors import BadCalibration
from cytoscreen.manifest import read_manifest
from cytoscreen.slide import Calibration, calibrate
from cytoscreen.types import SCORING_KEYS, scoring_kind


@dataclass(frozen=True)
class CalibrationRun:
    calibration: Calibration
    path: Path
    used: tuple[str, ...]  # manifest slide_ids used
    left_out: tuple[tuple[str, str], ...]  # (slide_id, why)


def calibrate_from_results(
    manifest: str | Path,
    results_dir: str | Path,
    out: str | Path,
    *,
    target_sensitivity: float = 0.99,
    confidence: float = 0.95,
) -> CalibrationRun:
    """Choose the threshold from screened, labelled slides and write calibration.json.

    Manifest rows are matched to ``<results_dir>/slides/*/result.json`` by slide path (relative
    to the manifest's folder). Blank slides, slides not screened and failed slides are left out
    (and listed); slides screened but not scorable count as unscorable.
    """
    manifest = Path(manifest)
    rows = read_manifest(manifest, check_files=False).rows
    by_path: dict[str, dict[str, Any]] = {}
    for p in sorted((Path(results_dir) / "slides").glob("*/result.json")):
        r = read_json_object(p)
        if r is not None and isinstance(r.get("path"), str):
            by_path[str(Path(r["path"]).resolve())] = r
    scores: list[float | None] = []
    labels: list[int] = []
    used: list[str] = []
    left_out: list[tuple[str, str]] = []
    chosen: list[dict[str, Any]] = []
    for row in rows:
        sid = row.slide_id
        if row.label == "blank":
            left_out.append((sid, "blank slide (expected not assessable)"))
            continue
        r = by_path.get(str(row.path))
        if r is None:
            left_out.append((sid, "not screened into these results"))
        elif r.get("status") != "ok":
            left_out.append((sid, f"screening failed: {r.get('error')}"))
        else:
            chosen.append(r)
            scores.append(r.get("score"))
            labels.append(1 if row.positive else 0)
            used.append(sid)
    if not used:
        raise BadCalibration(
            "no labelled slide of the manifest was screened into these results",
            slide=results_dir,
            hint=f"run `cytoscreen screen <slides> --out {results_dir} --scores-only` first",
        )
    models = {str(r.get("model_id")) for r in chosen}
    rules = {str(r.get("rule")) for r in chosen if r.get("rule")}
    if len(models) != 1 or len(rules) > 1:
        raise BadCalibration(
            f"the screened slides mix models {sorted(models)} / rules {sorted(rules)}",
            slide=results_dir,
            hint="screen all calibration slides with one model and one aggregation rule",
        )
    how = {scoring_kind(r.get("scoring")) for r in chosen}
    if len(how) > 1:
        raise BadCalibration(
            f"the screened slides were scored in different ways: {sorted(map(str, how))}",
            slide=results_dir,
            hint="screen all calibration slides with one scoring runtime and precision",
        )
    made = how.pop()
    rule = rules.pop() if rules else "unknown"
    if rule.startswith("learned"):
        raise BadCalibration(
            "the learned rule needs its coefficients fitted; this command calibrates fixed rules",
            slide=results_dir,
            hint="fit it with cytoscreen.slide.fit_learned_rule, or screen with another rule",
        )
    digest = file_sha256(manifest)[:16]
    cal = calibrate(
        scores,
        labels,
        model_id=models.pop(),
        rule=rule,
        data_source=f"manifest {manifest.resolve()} (sha256 {digest}): {len(used)} slides "
        f"screened into {Path(results_dir).resolve()}",
        target_sensitivity=target_sensitivity,
        confidence=confidence,
        scoring=dict(zip(SCORING_KEYS, made, strict=True)) if made else None,
    )
    target = write_text_atomic(Path(out), cal.model_dump_json(indent=2) + "\n")
    return CalibrationRun(cal, target, tuple(used), tuple(left_out))
