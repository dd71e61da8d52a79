"""``cytoscreen qa`` end to end on fabricated results (no model, no slide files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cytoscreen.cli import app
from cytoscreen.qa import run_qa

EVIL = "<script>alert(1)</script>"
# slide_id, label, worst Bethesda, site, (status, score, outcome) or None for "not screened"
SET: list[tuple[str, str, str, str, tuple[str, float | None, str | None] | None]] = [
    ("p1", "positive", "HSIL", "lab1", ("ok", 0.9, "review")),
    ("p2", "positive", "LSIL", "lab1", ("ok", 0.6, "review")),
    ("p3", "positive", "ASC-US", "lab2", ("ok", 0.2, "negative")),
    (EVIL, "positive", "HSIL", "lab2", ("failed", None, None)),
    ("n1", "negative", "NILM", "lab1", ("ok", 0.7, "review")),
    ("n2", "negative", "NILM", "lab1", ("ok", 0.3, "negative")),
    ("n3", "negative", "NILM", "lab2", ("ok", 0.1, "negative")),
    ("n4", "negative", "NILM", "lab2", ("ok", 0.05, "negative")),
    ("n5", "negative", "NILM", "lab2", ("ok", 0.4, "not_assessable")),
    ("b1", "blank", "", "lab2", ("ok", None, "not_assessable")),
    ("m1", "negative", "NILM", "lab2", None),
]
FIELDS = [  # p1's ranked fields; its one abnormal cell lies in field 2
    {"rank": 1, "score": 0.9, "x0": 0, "y0": 0, "x1": 100, "y1": 100},
    {"rank": 2, "score": 0.8, "x0": 400, "y0": 400, "x1": 500, "y1": 500},
]


def _fabricate(
    root: Path, name: str, scores: dict[str, float] | None = None, threshold: float | None = 0.5
) -> tuple[Path, Path]:
    """Write the manifest (once) and a results folder; returns (manifest, results)."""
    manifest = root / "set" / "manifest.csv"
    if not manifest.exists():
        manifest.parent.mkdir(parents=True)
        truth = {"cells": [{"x": 450, "y": 420, "abnormal": True}, {"x": 50, "y": 50}]}
        (manifest.parent / "p1.cells.json").write_text(json.dumps(truth), encoding="utf-8")
        lines = ["slide_id,path,label,worst_bethesda,site,ground_truth"]
        for i, (sid, label, beth, site, _) in enumerate(SET):
            gt = "p1.cells.json" if sid == "p1" else ""
            lines.append(f"{sid},slides/s{i}.tiff,{label},{beth},{site},{gt}")
        manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = root / name
    for i, (sid, _, _, _, res) in enumerate(SET):
        if res is None:
            continue
        status, score, outcome = res
        if scores and sid in scores:
            score = scores[sid]
        body: dict[str, Any] = {
            "id": f"s{i}",
            "path": str(manifest.parent / "slides" / f"s{i}.tiff"),
            "status": status,
            "score": score,
            "outcome": outcome if threshold is not None else None,
            "threshold": threshold if status == "ok" else None,
            "model_id": f"model-{name}",
            "rule": "top_k_mean(k=5)",
            "fields": FIELDS if sid == "p1" else [],
            "reasons": ["not assessable: too few cells"] if outcome == "not_assessable" else [],
            "error": "unreadable slide" if status == "failed" else None,
        }
        (results / "slides" / f"s{i}").mkdir(parents=True)
        (results / "slides" / f"s{i}" / "result.json").write_text(json.dumps(body), "utf-8")
    return manifest, results


def test_qa_end_to_end_numbers_html_and_plots(tmp_path: Path) -> None:
    manifest, results = _fabricate(tmp_path, "run")
    out = tmp_path / "qa"
    res = CliRunner().invoke(
        app, ["qa", "--manifest", str(manifest), "--results", str(results), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "sensitivity" in res.output and "report.html" in res.output
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    at = rep["at_threshold"]
    assert at["counts"] == {"tp": 2, "fn": 1, "tn": 3, "fp": 1}
    assert (at["sensitivity"]["k"], at["sensitivity"]["n"]) == (2, 3)
    assert (at["specificity"]["k"], at["specificity"]["n"]) == (3, 4)
    assert (at["set_aside"]["k"], at["set_aside"]["n"]) == (4, 10)  # of all labelled slides
    assert rep["threshold"] == 0.5
    na = {r["slide_id"]: r["status"] for r in rep["not_assessable"]}
    assert na == {EVIL: "failed", "n5": "ok", "m1": "missing"}  # listed, never dropped
    assert rep["blank_calls"]["not_assessable"] == 1
    assert rep["call_table"]["positive"] == {"negative": 1, "review": 2, "not_assessable": 1}
    assert rep["roc"]["auc"] == pytest.approx(0.75)
    assert rep["roc"]["thresholds"][0] is None  # +inf written as null, JSON stays valid
    cats = {k: (v["k"], v["n"]) for k, v in rep["by_category"].items()}
    assert cats == {"ASC-US": (0, 1), "LSIL": (1, 1), "HSIL": (1, 1)}
    assert set(rep["by_site"]) == {"lab1", "lab2"}
    assert rep["by_site"]["lab1"]["sensitivity"]["n"] == 2
    hits = {k: (v["k"], v["n"]) for k, v in rep["field_hits"]["hit_at"].items()}
    assert hits["1"] == (0, 1) and hits["3"] == (1, 1)
    assert [p["target"] for p in rep["operating_points"]] == [0.95, 0.98, 0.99, 1.0]
    assert rep["operating_points"][0]["threshold"] == 0.2  # all 3 positives must be caught
    assert rep["measured_on"] == (
        "manifest manifest.csv: 10 labelled slides (4 positive, 6 negative, plus 1 blank), "
        "site lab1, lab2"
    )
    assert rep["data"]["n_positive"] == 4 and rep["data"]["n_negative"] == 6

    html = (out / "report.html").read_text(encoding="utf-8")
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    assert '<td class="n">0.667</td><td class="n">2/3</td>' in html  # value with its count
    assert "manifest manifest.csv: 10 labelled slides" in html
    assert html.count("data:image/png;base64,") == 3
    for name in ("roc", "scores", "confusion"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scores_only_run_and_a_threshold_given(tmp_path: Path) -> None:
    manifest, results = _fabricate(tmp_path, "scores", threshold=None)
    rep = run_qa(manifest, results, tmp_path / "qa1", n_bootstrap=100)
    assert rep.evaluation.at_threshold is None
    assert any("scores-only" in w for w in rep.evaluation.warnings)
    assert rep.evaluation.roc is not None  # the ranking is still measured
    given = run_qa(manifest, results, tmp_path / "qa2", threshold=0.25, n_bootstrap=100)
    at = given.evaluation.at_threshold
    assert at is not None
    # n5 (score 0.4) has no outcome in a scores-only run: it is scored like the others
    assert (at.counts.tp, at.counts.fn, at.counts.tn, at.counts.fp) == (2, 1, 2, 3)


def test_one_class_missing_still_reports(tmp_path: Path) -> None:
    manifest, results = _fabricate(tmp_path, "run")
    lines = manifest.read_text(encoding="utf-8").splitlines()
    only_neg = tmp_path / "set" / "negatives.csv"
    only_neg.write_text("\n".join([lines[0], *[ln for ln in lines if ",negative," in ln]]) + "\n")
    rep = run_qa(only_neg, results, tmp_path / "qa", n_bootstrap=50)
    ev = rep.evaluation
    assert ev.roc is None and ev.at_threshold is not None
    assert ev.at_threshold.sensitivity is None and ev.at_threshold.specificity is not None
    assert all(p.threshold is None for p in ev.operating_points)
    assert any("no positive slide" in w for w in ev.warnings)
    html = rep.html.read_text(encoding="utf-8")
    assert "not measurable" in html and "No ROC curve" in html


def test_compare_two_runs_paired(tmp_path: Path) -> None:
    better = {"p3": 0.75, "n1": 0.3, "p2": 0.8}
    manifest, run_a = _fabricate(tmp_path, "a")
    _, run_b = _fabricate(tmp_path, "b", scores=better)
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        app,
        ["qa", "--manifest", str(manifest), "--compare", str(run_a), str(run_b), "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert "DeLong" in res.output
    body = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    p = body["paired"]
    assert p["auc_a"] == pytest.approx(0.75) and p["auc_b"] == pytest.approx(1.0)
    assert (p["n_positive"], p["n_negative"]) == (3, 4)
    assert body["n_left_out"] == 3
    assert 0.0 <= p["p_value"] <= 1.0 and p["lower"] <= p["difference"] <= p["upper"]
    assert "&lt;script&gt;" not in (out / "comparison.html").read_text(encoding="utf-8")


def test_bad_manifest_stops_before_any_work(tmp_path: Path) -> None:
    manifest, results = _fabricate(tmp_path, "run")
    bad = tmp_path / "set" / "bad.csv"
    bad.write_text("slide_id,path,label\nx,../a.tiff,positive\nx,b.tiff,unknown\n")
    res = CliRunner().invoke(
        app, ["qa", "--manifest", str(bad), "--results", str(results), "--out", str(tmp_path / "q")]
    )
    assert res.exit_code == 2
    assert not (tmp_path / "q").exists()
