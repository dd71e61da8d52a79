"""``cytoscreen export fhir`` and ``cytoscreen screen --fhir``: on a results folder screened
from tiny synthetic slides with the tiny model, every report agrees with its slide's
result.json; folders that are not results are refused with exit code 2 and no traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from typer.testing import CliRunner

from cytoscreen.cli import app
from cytoscreen.scoring.card import read_card
from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide


@pytest.fixture(scope="module")
def screened(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, config_path: Path
) -> tuple[Path, Path, Any]:
    """(slides folder, results folder, the CLI result) of ``screen --fhir``: a negative, a
    positive, a blank (not assessable) and a broken slide (failed)."""
    slides = tmp_path_factory.mktemp("fhir_slides")
    kit = bundled_kit()
    generate_slide(
        slides / "negative.tiff",
        SlideSpec(size=768, label="negative", seed=1, density=3000.0),
        kit,
    )
    generate_slide(
        slides / "positive.tiff",
        SlideSpec(size=768, label="positive", seed=2, n_abnormal=4, density=3000.0),
        kit,
    )
    generate_slide(slides / "blank.tiff", SlideSpec(size=512, label="blank", seed=3), kit)
    (slides / "broken.svs").write_bytes(b"not a slide at all" * 64)
    out = tmp_path_factory.mktemp("fhir_results")
    args = ["screen", str(slides), "--out", str(out), "--config", str(config_path)]
    args += ["--model", str(model_dir), "--fhir", str(out / "screen-bundle.json")]
    return slides, out, CliRunner().invoke(app, args)


def _resources(path: Path) -> dict[str, dict[str, Any]]:
    """Every resource of the bundle by full URL, each validated again by its R4B model."""
    text = path.read_text(encoding="utf-8")
    Bundle.model_validate_json(text)
    found = {}
    for entry in json.loads(text)["entry"]:
        res = entry["resource"]
        get_fhir_model_class(res["resourceType"]).model_validate(res)
        found[entry["fullUrl"]] = res
    return found


def _records(out: Path) -> dict[str, dict[str, Any]]:
    return {
        p.parent.name: json.loads(p.read_text(encoding="utf-8"))
        for p in (out / "slides").glob("*/result.json")
    }


def _by_slide(resources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        r["identifier"][0]["value"]: r
        for r in resources.values()
        if r["resourceType"] == "DiagnosticReport"
    }


def _code(obs: dict[str, Any]) -> str:
    code: str = obs["code"]["coding"][0]["code"]
    return code


def test_screen_writes_a_bundle_that_agrees_with_every_result(
    screened: tuple[Path, Path, Any], model_dir: Path
) -> None:
    _, out, res = screened
    assert res.exit_code == 1, res.output  # the broken slide failed; the bundle is written
    assert "FHIR bundle: 4 reports" in res.output
    resources = _resources(out / "screen-bundle.json")
    records = _records(out)
    reports = _by_slide(resources)
    assert set(reports) == set(records)
    model_id = read_card(model_dir).model_id
    states = set()
    for sid, rec in records.items():
        report = reports[sid]
        if rec["status"] == "failed":
            assert report["status"] == "cancelled" and "result" not in report
            assert "broken.svs" in report["conclusion"]
            states.add("failed")
            continue
        states.add(rec["outcome"])
        assert report["status"] == "preliminary"
        obs = {_code(o): o for o in (resources[r["reference"]] for r in report["result"])}
        outcome = obs["triage-outcome"]["valueCodeableConcept"]["coding"][0]["code"]
        assert outcome == rec["outcome"]
        score = obs["slide-score"]
        if rec["score"] is None:
            assert "valueQuantity" not in score
        else:
            assert score["valueQuantity"]["value"] == rec["score"]
        threshold = [
            c["valueQuantity"]["value"]
            for c in score["component"]
            if _code(c) == "review-threshold"
        ]
        assert threshold == [rec["threshold"]] and rec["threshold"] == pytest.approx(0.6)
        assert obs["cellularity"]["valueQuantity"]["value"] == rec["cellularity"]
        device = resources[obs["slide-score"]["device"]["reference"]]
        assert device["identifier"][0]["value"] == rec["model_id"] == model_id
        media = [resources[m["link"]["reference"]] for m in report.get("media", [])]
        assert len(media) == len(rec["fields"])
        for m, field in zip(media, rec["fields"], strict=True):
            png = out / m["content"]["url"]
            assert png.resolve() == (out / "slides" / sid / field["image"]).resolve()
            assert m["content"]["size"] == png.stat().st_size
    assert {"failed", "not_assessable"} <= states


def test_export_writes_the_same_resources_as_screen(
    screened: tuple[Path, Path, Any], tmp_path: Path
) -> None:
    _, out, _ = screened
    target = out / "exported.json"
    res = CliRunner().invoke(app, ["export", "fhir", str(out), "--out", str(target)])
    assert res.exit_code == 0, res.output
    assert "1 slide(s) failed to screen, written as cancelled reports" in res.output
    assert _resources(target) == _resources(out / "screen-bundle.json")
    default = CliRunner().invoke(app, ["export", "fhir", str(out)])
    assert default.exit_code == 0, default.output
    assert (out / "fhir-bundle.json").is_file()


def test_export_with_a_manifest_names_patient_and_specimen(
    screened: tuple[Path, Path, Any], tmp_path: Path
) -> None:
    slides, out, _ = screened
    manifest = slides / "manifest.csv"
    manifest.write_text(
        "slide_id,path,label,patient_id,specimen_id\n"
        "pos,positive.tiff,positive,P-1,S-1\n"
        "neg,negative.tiff,negative,P-2,S-2\n",
        encoding="utf-8",
    )
    target = tmp_path / "bundle.json"
    res = CliRunner().invoke(
        app,
        ["export", "fhir", str(out), "--out", str(target), "--manifest", str(manifest),
         "--patient-system", "urn:oid:1.2.3.4"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    reports = _by_slide(_resources(target))
    named = {
        sid: (r["subject"]["identifier"]["value"], r["specimen"][0]["identifier"]["value"])
        for sid, r in reports.items()
        if "subject" in r
    }
    assert sorted(named.values()) == [("P-1", "S-1"), ("P-2", "S-2")]
    pos = next(sid for sid in named if sid.startswith("positive-"))
    assert named[pos] == ("P-1", "S-1")
    assert reports[pos]["subject"]["identifier"]["system"] == "urn:oid:1.2.3.4"
    assert "2 slide(s) without a manifest row" in res.output


def test_export_refuses_a_folder_that_is_not_results(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["export", "fhir", str(tmp_path), "--out", "b.json"])
    assert res.exit_code == 2
    assert "no slides/ folder here" in res.output and "cytoscreen screen" in res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    assert not (tmp_path / "b.json").exists()


def test_export_names_a_damaged_record(screened: tuple[Path, Path, Any], tmp_path: Path) -> None:
    _, out, _ = screened
    copy = tmp_path / "copy"
    shutil.copytree(out / "slides", copy / "slides")
    damaged = next(copy.glob("slides/negative-*/result.json"))
    damaged.write_text("{not json", encoding="utf-8")
    res = CliRunner().invoke(app, ["export", "fhir", str(copy)])
    assert res.exit_code == 2
    assert str(damaged) in res.output and "not valid JSON" in res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    assert not (copy / "fhir-bundle.json").exists()


def test_export_refuses_a_negative_embed_count(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["export", "fhir", str(tmp_path), "--embed-fields", "-1"])
    assert res.exit_code == 2 and "--embed-fields" in res.output
