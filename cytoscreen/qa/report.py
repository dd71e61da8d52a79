"""``cytoscreen qa``: write report.json, report.html and the PNG plots of one screened run."""

from __future__ import annotations

import base64
import dataclasses
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel

import cytoscreen
from cytoscreen.batch import write_bytes_atomic, write_json_atomic, write_text_atomic
from cytoscreen.manifest import read_manifest
from cytoscreen.qa.collect import collect_run
from cytoscreen.qa.evaluate import Evaluation, evaluate
from cytoscreen.qa.plots import confusion_png, roc_png, scores_png
from cytoscreen.qa.template import REPORT_HTML
from cytoscreen.stats import Proportion

REPORT_FORMAT = 1


def jsonable(obj: Any) -> Any:
    """Dataclasses, pydantic models, tuples and paths as plain JSON values; inf/nan -> None."""
    if isinstance(obj, BaseModel):
        return jsonable(obj.model_dump())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.4g}"


def format_proportion(p: Proportion | None) -> str:
    if p is None or p.value is None or p.lower is None or p.upper is None:
        return "not measurable (n = 0)"
    return f"{p.value:.3f} ({p.k}/{p.n}; {p.lower:.3f}-{p.upper:.3f})"


def render_html(ev: Evaluation, images: dict[str, str], created: str, n_bootstrap: int) -> str:
    """The report page; ``images`` maps confusion/roc/scores to base64 PNG (or is empty)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    images = {k: images.get(k, "") for k in ("confusion", "roc", "scores")}
    at = ev.at_threshold
    at_rows = (
        [
            ("sensitivity", at.sensitivity),
            ("specificity", at.specificity),
            ("PPV", at.ppv),
            ("NPV", at.npv),
            ("set aside as negative (workload reduction)", at.set_aside),
        ]
        if at
        else []
    )
    return env.from_string(REPORT_HTML).render(
        data=ev.data,
        describe=ev.data.describe(),
        threshold=ev.threshold,
        threshold_source=ev.threshold_source,
        pct=f"{ev.confidence:.0%}",
        n_bootstrap=n_bootstrap,
        version=cytoscreen.__version__,
        created=created,
        warnings=ev.warnings,
        at=at,
        at_rows=at_rows,
        not_assessable=ev.not_assessable,
        blank_calls=ev.blank_calls,
        roc=ev.roc,
        points=ev.operating_points,
        by_category=ev.by_category,
        by_site=ev.by_site,
        field_hits=ev.field_hits,
        images=images,
        fmt=_fmt,
        prop=format_proportion,
    )


def _plots(ev: Evaluation) -> dict[str, bytes]:
    caption = f"Measured on {ev.data.describe()}."
    out: dict[str, bytes] = {}
    if ev.at_threshold is not None:
        out["confusion"] = confusion_png(ev.call_table, caption)
    if ev.roc is not None:
        at = ev.at_threshold
        point = None
        if at is not None and at.sensitivity is not None and at.specificity is not None:
            sens, spec = at.sensitivity.value, at.specificity.value
            point = None if sens is None or spec is None else (1.0 - spec, sens)
        out["roc"] = roc_png(ev.roc, point, caption)
    if ev.scores:
        out["scores"] = scores_png(ev.scores, ev.labels, ev.threshold, caption)
    return out


@dataclass(frozen=True)
class QaReport:
    evaluation: Evaluation
    out_dir: Path
    html: Path
    json: Path
    pngs: tuple[Path, ...]


def write_report(ev: Evaluation, out_dir: str | Path, *, n_bootstrap: int) -> QaReport:
    out = Path(out_dir)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    pngs = _plots(ev)
    paths = tuple(write_bytes_atomic(out / f"{name}.png", data) for name, data in pngs.items())
    images = {k: base64.b64encode(v).decode("ascii") for k, v in pngs.items()}
    body = {
        "format": REPORT_FORMAT,
        "created": created,
        "version": cytoscreen.__version__,
        "measured_on": ev.data.describe(),
        "n_bootstrap": n_bootstrap,
        **jsonable(ev),
    }
    js = write_json_atomic(out / "report.json", body)
    html = write_text_atomic(out / "report.html", render_html(ev, images, created, n_bootstrap))
    return QaReport(ev, out, Path(html), Path(js), tuple(Path(p) for p in paths))


def run_qa(
    manifest: str | Path,
    results_dir: str | Path,
    out_dir: str | Path,
    *,
    threshold: float | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 2000,
) -> QaReport:
    """Validate the manifest, match it to a screen run's results, and write the QA report."""
    m = read_manifest(manifest, check_files=False)
    run = collect_run(m, results_dir)
    ev = evaluate(m, run, threshold=threshold, confidence=confidence, n_bootstrap=n_bootstrap)
    return write_report(ev, out_dir, n_bootstrap=n_bootstrap)
