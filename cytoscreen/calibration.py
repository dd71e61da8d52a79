"""``cytoscreen calibrate``: choose the threshold from screened, labelled slides.

Reads a manifest (``slide_id,path,label``; validated by :func:`cytoscreen.manifest.read_manifest`,
every row's problems reported together), matches its rows to the slide results of a
``cytoscreen screen`` run (:func:`cytoscreen.slide_result.match_manifest`: by resolved slide
path, else by slide id, as ``qa`` does), and calibrates the aggregation rule those results
used (the maths is :func:`cytoscreen.slide.threshold.calibrate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytoscreen.batch import file_sha256, write_text_atomic
from cytoscreen.errors import BadCalibration, CacheMismatch
from cytoscreen.fsutil import shown_path
from cytoscreen.manifest import ManifestRow, read_manifest
from cytoscreen.slide import Calibration, calibrate
from cytoscreen.slide.applicability import N_KEY, fit_score_reference, score_stats
from cytoscreen.slide.record import TargetAt
from cytoscreen.slide_result import SLIDES_DIR, SlideResult, load_results, match_manifest
from cytoscreen.strata import abnormal_stratum
from cytoscreen.types import SCORING_KEYS, scores_key, scoring_kind

# manifest columns the calibration reports by (when the manifest has them; a generated set's
# manifest does): categorical ones as they are, numeric ones in thirds of the set's range
STRATA_COLUMNS: tuple[str, ...] = ("n_abnormal", "prep", "mpp", "stain", "focus_um", "quality")
CATEGORICAL = ("prep", "mpp")
DEFAULT_APPLICABILITY_LIMIT = 4.0
BETHESDA_MINIMUM = {"liquid": 5000, "conventional": 8000}  # squamous cells of an adequate slide


@dataclass(frozen=True)
class CalibrationRun:
    calibration: Calibration
    path: Path
    used: tuple[str, ...]  # manifest slide_ids used
    left_out: tuple[tuple[str, str], ...]  # (slide_id, why)


def _abnormal_stratum(n: str) -> str:
    return abnormal_stratum(int(float(n))) if n else "unknown"


def strata_of(rows: list[ManifestRow]) -> dict[str, list[str]]:
    """A stratum label per row for each of ``STRATA_COLUMNS`` the manifest fills in: the
    number of abnormal cells (positives only; negatives '0'), categorical columns as written,
    numeric ones as the set's thirds (low/mid/high with their ranges)."""
    out: dict[str, list[str]] = {}
    for col in STRATA_COLUMNS:
        values = [r.extra.get(col, "") for r in rows]
        if not any(values):
            continue
        if col == "n_abnormal":
            out[col] = [
                _abnormal_stratum(v) if r.positive else "0"
                for v, r in zip(values, rows, strict=True)
            ]
        elif col in CATEGORICAL:
            out[col] = [v or "unknown" for v in values]
        else:
            nums = np.array([float(v) if v else np.nan for v in values])
            finite = nums[np.isfinite(nums)]
            if finite.size < 3 or finite.min() == finite.max():
                continue
            a, b = np.quantile(finite, [1 / 3, 2 / 3])
            names = (f"low (<{a:.3g})", f"mid ({a:.3g}-{b:.3g})", f"high (>{b:.3g})")
            out[col] = [
                "unknown" if not np.isfinite(x) else names[int(x > a) + int(x > b)] for x in nums
            ]
    return out


def _patch_scores(result: SlideResult) -> tuple[np.ndarray, np.ndarray] | None:
    """The slide's stored patch probabilities and which patches hold cells (from its cache)."""
    from cytoscreen.tiling.store import PatchStore

    store, model = result.cache, result.model_id
    if store is None or model is None or not Path(store).is_dir():
        return None
    try:
        patches = PatchStore.open(store)
        key = scores_key(model, result.scoring)
        prob = patches.read_scores(key, complete_only=False).astype(np.float64)
        nuclei = patches.nuclei
    except (CacheMismatch, KeyError, OSError, ValueError):
        return None
    return prob, nuclei > 0


def calibrate_from_results(
    manifest: str | Path,
    results_dir: str | Path,
    out: str | Path,
    *,
    target_sensitivity: float = 0.99,
    confidence: float = 0.95,
    min_cells: Mapping[str, int] | None = None,
    applicability_limit: float | None = DEFAULT_APPLICABILITY_LIMIT,
    target_at: TargetAt = "lower_bound",
) -> CalibrationRun:
    """Choose the threshold from screened, labelled slides and write calibration.json.

    Manifest rows are matched to the slide results in ``results_dir`` by
    :func:`~cytoscreen.slide_result.match_manifest` (the row's path, relative to the manifest's
    folder, else its slide id). Blank slides, slides not screened and failed slides are left out
    (and listed); slides screened but not scorable count as unscorable. When the manifest has
    the columns of a generated set, the threshold holds the target in every stratum of
    ``STRATA_COLUMNS`` and the record keeps each stratum's figures; negatives with fewer cells
    (manifest ``n_cells``) than the minimum of their preparation (manifest ``prep``;
    ``min_cells``, default Bethesda's 5,000 liquid-based and 8,000 conventional) are not
    counted for specificity (a scanty slide is not assessable, not negative).
    ``applicability_limit``: the score reference is fitted to the counted negatives' patch
    scores (read from their caches) and recorded. ``target_at``: the target held as the exact
    lower bound of the pooled sensitivity (default; on a set too small to show it, every
    positive is detected) or as the sensitivity measured on the set ("point").
    """
    manifest = Path(manifest)
    rows = read_manifest(manifest, check_files=False).rows
    screened = (Path(results_dir) / SLIDES_DIR).is_dir()  # if not: nothing screened there yet
    matched = match_manifest(rows, load_results(results_dir) if screened else [])
    scores: list[float | None] = []
    labels: list[int] = []
    used: list[str] = []
    left_out: list[tuple[str, str]] = []
    chosen: list[SlideResult] = []
    used_rows: list[ManifestRow] = []
    for row, r in zip(rows, matched, strict=True):
        sid = row.slide_id
        if row.label == "blank":
            left_out.append((sid, "blank slide (expected not assessable)"))
            continue
        if r is None:
            left_out.append((sid, "not screened into these results"))
        elif r.failed:
            left_out.append((sid, f"screening failed: {r.error}"))
        else:
            chosen.append(r)
            scores.append(r.score)
            labels.append(1 if row.positive else 0)
            used.append(sid)
            used_rows.append(row)
    if not used:
        raise BadCalibration(
            "no labelled slide of the manifest was screened into these results",
            subject=results_dir,
            hint=f"run `cytoscreen screen <slides> --out {results_dir} --scores-only` first",
        )
    models = {str(r.model_id) for r in chosen}
    rules = {r.rule for r in chosen if r.rule}
    if len(models) != 1 or len(rules) > 1:
        raise BadCalibration(
            f"the screened slides mix models {sorted(models)} / rules {sorted(rules)}",
            subject=results_dir,
            hint="screen all calibration slides with one model and one aggregation rule",
        )
    how = {scoring_kind(r.scoring) for r in chosen}
    if len(how) > 1:
        raise BadCalibration(
            f"the screened slides were scored in different ways: {sorted(map(str, how))}",
            subject=results_dir,
            hint="screen all calibration slides with one scoring runtime and precision",
        )
    made = how.pop()
    rule = rules.pop() if rules else "unknown"
    if rule.startswith("learned"):
        raise BadCalibration(
            "the learned rule needs its coefficients fitted; this command calibrates fixed rules",
            subject=results_dir,
            hint="fit it with cytoscreen.slide.fit_learned_rule, or screen with another rule",
        )
    digest = file_sha256(manifest)[:16]
    minimum = dict(min_cells or BETHESDA_MINIMUM)
    counted = [
        r.positive or not r.extra.get("n_cells")
        or float(r.extra["n_cells"]) >= minimum.get(r.extra.get("prep") or "liquid", 0)
        for r in used_rows
    ]  # fmt: skip
    reference = None
    if applicability_limit is not None:
        stats, sizes = [], []
        for r, row, keep in zip(chosen, used_rows, counted, strict=True):
            pair = _patch_scores(r) if keep else None
            st = score_stats(*pair) if pair is not None else None
            if st is not None:
                sizes.append(int(st[N_KEY]))
                if not row.positive:
                    stats.append(st)
        if len(stats) >= 5:
            reference = fit_score_reference(
                stats,
                limit=applicability_limit,
                source=f"patch scores of {len(stats)} counted negative slides of manifest "
                f"{manifest.name} (sha256 {digest})",
                min_patches=min(sizes),
            )
    cal = calibrate(
        scores,
        labels,
        model_id=models.pop(),
        rule=rule,
        data_source=f"manifest {shown_path(manifest)} (sha256 {digest}): {len(used)} slides "
        f"screened into {shown_path(results_dir)}",
        target_sensitivity=target_sensitivity,
        confidence=confidence,
        scoring=dict(zip(SCORING_KEYS, made, strict=True)) if made else None,
        strata=strata_of(used_rows) or None,
        specificity_mask=counted,
        applicability=reference,
        target_at=target_at,
    )
    target = write_text_atomic(Path(out), cal.model_dump_json(indent=2) + "\n")
    return CalibrationRun(cal, target, tuple(used), tuple(left_out))
