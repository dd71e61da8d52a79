"""``cytoscreen qa --compare A B``: two screen runs on the same labelled set, paired.

The AUC difference is tested with DeLong's paired test on the slides assessable in both runs,
so a new model is adopted on evidence rather than on a point estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import numpy as np

import cytoscreen
from cytoscreen.batch import write_json_atomic, write_text_atomic
from cytoscreen.errors import CytoscreenError
from cytoscreen.manifest import read_manifest
from cytoscreen.qa.collect import RunResults, collect_run
from cytoscreen.qa.evaluate import DataInfo, Evaluation, evaluate
from cytoscreen.qa.metrics import PairedAuc, delong_paired
from cytoscreen.qa.report import format_proportion, jsonable
from cytoscreen.qa.template import COMPARE_HTML


@dataclass(frozen=True)
class Comparison:
    data: DataInfo
    a: Evaluation
    b: Evaluation
    paired: PairedAuc
    n_left_out: int  # labelled slides not assessable in at least one run
    verdict: str
    json: Path
    html: Path


def paired_scores(a: RunResults, b: RunResults) -> tuple[list[float], list[float], list[int], int]:
    """Scores of the labelled slides assessable in both runs (same manifest order)."""
    sa, sb, y, left = [], [], [], 0
    for x, z in zip(a.slides, b.slides, strict=True):
        if x.row.label == "blank":
            continue
        if x.assessable() and z.assessable() and x.score is not None and z.score is not None:
            sa.append(x.score)
            sb.append(z.score)
            y.append(int(x.row.positive))
        else:
            left += 1
    return sa, sb, y, left


def _verdict(p: PairedAuc, confidence: float) -> str:
    if p.lower > 0:
        return f"B ranks slides better than A (the {confidence:.0%} interval excludes 0)."
    if p.upper < 0:
        return f"B ranks slides worse than A (the {confidence:.0%} interval excludes 0)."
    return "No evidence of a difference on this set: keep A unless B brings something else."


def compare_runs(
    manifest: str | Path,
    results_a: str | Path,
    results_b: str | Path,
    out_dir: str | Path,
    *,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
) -> Comparison:
    """Paired comparison of two runs; writes comparison.json and comparison.html."""
    m = read_manifest(manifest, check_files=False)
    run_a, run_b = collect_run(m, results_a), collect_run(m, results_b)
    sa, sb, y, left = paired_scores(run_a, run_b)
    try:
        paired = delong_paired(np.array(sa), np.array(sb), np.array(y), confidence=confidence)
    except ValueError as exc:
        raise CytoscreenError(
            f"cannot compare the runs: {exc}",
            subject=m.path,
            hint="screen the same labelled slides (both classes) with both models",
        ) from None
    ev_a = evaluate(m, run_a, confidence=confidence, n_bootstrap=n_bootstrap)
    ev_b = evaluate(m, run_b, confidence=confidence, n_bootstrap=n_bootstrap)
    verdict = _verdict(paired, confidence)
    out = Path(out_dir)
    body = {
        "format": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": cytoscreen.__version__,
        "measured_on": ev_a.data.describe(),
        "test": "DeLong paired test of correlated AUCs (B - A)",
        "paired": jsonable(paired),
        "n_left_out": left,
        "verdict": verdict,
        "a": {
            "results": str(run_a.results_dir),
            "model_id": run_a.model_id,
            "at_threshold": jsonable(ev_a.at_threshold),
            "roc_auc": jsonable(ev_a.roc and ev_a.roc.auc),
        },
        "b": {
            "results": str(run_b.results_dir),
            "model_id": run_b.model_id,
            "at_threshold": jsonable(ev_b.at_threshold),
            "roc_auc": jsonable(ev_b.roc and ev_b.roc.auc),
        },
    }
    js = write_json_atomic(out / "comparison.json", body)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.from_string(COMPARE_HTML).render(
        data=ev_a.data,
        describe=ev_a.data.describe(),
        paired=paired,
        a={"results": run_a.results_dir, "model_id": run_a.model_id},
        b={"results": run_b.results_dir, "model_id": run_b.model_id},
        at_a=ev_a.at_threshold,
        at_b=ev_b.at_threshold,
        pct=f"{confidence:.0%}",
        verdict=verdict,
        prop=format_proportion,
    )
    page = write_text_atomic(out / "comparison.html", html)
    return Comparison(ev_a.data, ev_a, ev_b, paired, left, verdict, js, page)
