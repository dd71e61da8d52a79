"""The FHIR export: resources built from slide records, read back through fhir.resources, and
checked against the records they came from (values, not only that they parse)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from PIL import Image

from cytoscreen.errors import BadManifest, CytoscreenError, NotAResultsFolder
from cytoscreen.outputs import fhir
from cytoscreen.slide import TriageSettings, calibrate, decide
from cytoscreen.slide.decide import adequacy_findings
from cytoscreen.slide_result import SlideResult
from cytoscreen.types import Outcome, SlideScore, SuspiciousField

WHEN = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
CAL = calibrate(
    [0.2, 0.4, 0.6, 0.8], [0, 0, 1, 1], model_id="tiny-m", rule="max", data_source="test"
)
STRICT = TriageSettings(min_cellularity=5000)
FIELD = SuspiciousField(rank=1, score=0.91, x0=10, y0=20, x1=42, y1=52, patch_indices=(3,))


def _decided(score: float | None, cells: int, obscured: float | None = None) -> dict[str, Any]:
    """The decision's part of a record, made by the real ``decide``."""
    s = SlideScore(
        score=score, rule="max", n_patches=0 if score is None else 40,
        n_scored=0 if score is None else 40, n_unreadable=0, cellularity=cells,
        fields=(FIELD,) if score is not None else (), obscured=obscured,
    )  # fmt: skip
    d = decide(s, CAL, settings=STRICT)
    return {
        "outcome": d.outcome.value, "threshold": d.threshold, "reasons": list(d.reasons),
        "warnings": list(d.warnings), "score": score, "rule": "max", "cellularity": cells,
        "obscured": obscured,
        "counts": {"n_patches": s.n_patches, "n_scored": s.n_scored, "n_unreadable": 0,
                   "n_fields": len(s.fields)},
    }  # fmt: skip


def _fields(n: int) -> list[dict[str, Any]]:
    return [
        {"rank": k, "score": round(0.95 - 0.1 * k, 3), "x0": 10 * k, "y0": 20, "x1": 10 * k + 32,
         "y1": 52, "image": f"fields/{k}.png"}
        for k in range(1, n + 1)
    ]  # fmt: skip


BASE: dict[str, Any] = {
    "format": 1, "version": "0.1.0", "model_id": "tiny-m", "status": "ok", "error": None,
    "slide_key": "k", "finished": "2025-03-04T05:00:00+00:00",
    "calibration": {"path": "/srv/models/tiny/calibration.json", "sha256": "ab" * 32,
                    "threshold": CAL.threshold, "rule": "max", "target_sensitivity": 0.99},
    "calibration_sha256": "ab" * 32,
}  # fmt: skip
RECORDS: dict[str, dict[str, Any]] = {
    "review-aaaa": {**_decided(0.9123456789, 9000, 0.1234567), "fields": _fields(3)},
    "negative-bbbb": {**_decided(0.2345678901, 9000, 0.05), "fields": _fields(1)},
    "scanty-cccc": {**_decided(0.2, 1200, 0.05), "fields": _fields(1)},
    "blank-dddd": _decided(None, 0),
    "scanty_reviewed-eeee": {**_decided(0.9, 1200, None), "fields": _fields(1)},
    "scored-ffff": {"outcome": None, "threshold": None, "calibration": None,
                    "calibration_sha256": None, "score": 0.4567891234, "rule": "max",
                    "reasons": ["scores only: no calibration was used, so no triage decision"],
                    "cellularity": 7000, "fields": []},
    "broken-9999": {"status": "failed", "error": "broken.svs: not a slide -- check the file",
                    "outcome": None, "score": None, "threshold": None, "fields": [],
                    "model_id": "tiny-m"},
}  # fmt: skip


def _png(path: Path, w: int, h: int, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), shade, np.uint8)).save(path)


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    root = tmp_path / "RESULTS"
    for i, (sid, rec) in enumerate(RECORDS.items()):
        record = {**BASE, "id": sid, "path": f"/slides/{sid.split('-')[0]}.tiff", **rec}
        folder = root / "slides" / sid
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(record), encoding="utf-8")
        for f in record.get("fields", []):
            _png(folder / f["image"], 40 + i, 30 + f["rank"], 100 + f["rank"])
    return root


def _record(results: Path, sid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((results / "slides" / sid / "result.json").read_text())
    return data


def _read(path: Path) -> tuple[Bundle, dict[str, dict[str, Any]]]:
    """The bundle parsed back, every resource validated again on its own, and the resources
    (as JSON) by full URL."""
    text = path.read_text(encoding="utf-8")
    bundle = Bundle.model_validate_json(text)
    by_url = {}
    for entry in json.loads(text)["entry"]:
        res = entry["resource"]
        model = get_fhir_model_class(res["resourceType"])
        again = model.model_validate(res)  # raises on anything the R4B model refuses
        assert json.loads(again.model_dump_json()) == res
        by_url[entry["fullUrl"]] = res
    return bundle, by_url


def _report(by_url: dict[str, dict[str, Any]], sid: str) -> dict[str, Any]:
    found = [
        r
        for r in by_url.values()
        if r["resourceType"] == "DiagnosticReport" and r["identifier"][0]["value"] == sid
    ]
    assert len(found) == 1
    return found[0]


def _observations(by_url: dict[str, dict[str, Any]], report: dict[str, Any]) -> dict[str, Any]:
    obs = [by_url[ref["reference"]] for ref in report.get("result", [])]
    return {o["code"]["coding"][0]["code"]: o for o in obs}


def _components(obs: dict[str, Any], code: str) -> list[Any]:
    out = []
    for c in obs.get("component", []):
        if c["code"]["coding"][0]["code"] == code:
            out += [v for k, v in c.items() if k.startswith("value")]
    return out


def test_adequacy_is_read_back_from_real_decisions() -> None:
    ok = _decided(0.2, 9000, 0.1)
    scanty = _decided(0.2, 1200, 0.1)
    hidden = _decided(0.2, 9000, 0.9)
    both = _decided(0.2, 1200, 0.9)
    reviewed = _decided(0.9, 1200, 0.1)
    assert scanty["outcome"] == both["outcome"] == Outcome.NOT_ASSESSABLE
    assert reviewed["outcome"] == Outcome.REVIEW
    found = {
        name: adequacy_findings(d["reasons"], d["warnings"])
        for name, d in [("ok", ok), ("scanty", scanty), ("hidden", hidden), ("both", both),
                        ("reviewed", reviewed)]
    }  # fmt: skip
    assert found["ok"].adequate and not found["ok"].overridden
    assert found["scanty"].too_few_cells and not found["scanty"].mostly_obscured
    assert found["hidden"].mostly_obscured and not found["hidden"].too_few_cells
    assert found["both"].too_few_cells and found["both"].mostly_obscured
    assert found["reviewed"].too_few_cells and found["reviewed"].overridden

    def code(d: dict[str, Any]) -> str | None:
        c = fhir.adequacy_code(SlideResult.model_validate({"id": "s", "status": "ok", **d}))
        return c[1] if c else None

    assert [code(d) for d in (ok, scanty, hidden, both, reviewed)] == [
        "125152006",
        "125161006",
        "125154007",
        "125154007",
        "125161006",
    ]


def test_every_resource_round_trips_and_matches_its_record(
    results_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export" / "bundle.json"
    done = fhir.write_fhir_bundle(results_dir, out, timestamp=WHEN)
    assert done.path == out and done.n_reports == len(RECORDS)
    assert done.states == {
        "review": 2, "negative": 1, "not_assessable": 2, "scored": 1, "failed": 1
    }  # fmt: skip
    bundle, by_url = _read(out)
    assert bundle.type == "collection" and bundle.timestamp == WHEN
    kinds = [r["resourceType"] for r in by_url.values()]
    assert kinds.count("DiagnosticReport") == len(RECORDS)
    assert kinds.count("Device") == 2  # calibrated, and scores only (no calibration)
    for sid in RECORDS:
        rec, report = _record(results_dir, sid), _report(by_url, sid)
        assert report["code"]["coding"][0] == {
            "system": "http://loinc.org",
            "code": "47528-5",
            "display": "Cytology report of Cervical or vaginal smear or scraping Cyto stain",
        }
        assert datetime.fromisoformat(report["issued"]) == datetime.fromisoformat(rec["finished"])
        if rec["status"] == "failed":
            assert report["status"] == "cancelled" and "result" not in report
            assert rec["error"] in report["conclusion"]
            continue
        assert report["status"] == "preliminary"
        obs = _observations(by_url, report)
        assert set(obs) == {"triage-outcome", "slide-score", "cellularity", "adequacy"}
        assert all(o["status"] == "preliminary" for o in obs.values())
        outcome = obs["triage-outcome"]
        if rec["outcome"] is None:
            assert outcome["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
            assert "conclusionCode" not in report
        else:
            assert outcome["valueCodeableConcept"]["coding"][0]["code"] == rec["outcome"]
            assert report["conclusionCode"][0]["coding"][0]["code"] == rec["outcome"]
        assert _components(outcome, "reason") == rec["reasons"]
        assert _components(outcome, "warning") == rec.get("warnings", [])
        score = obs["slide-score"]
        if rec["score"] is None:
            assert "valueQuantity" not in score and "dataAbsentReason" in score
        else:
            assert score["valueQuantity"]["value"] == rec["score"]
        threshold = _components(score, "review-threshold")
        assert [t["value"] for t in threshold] == (
            [] if rec["threshold"] is None else [rec["threshold"]]
        )
        assert obs["cellularity"]["valueQuantity"]["value"] == rec["cellularity"]
        assert obs["cellularity"]["valueQuantity"]["code"] == "{cells}"
        obscured = _components(obs["cellularity"], "obscured-share")
        if rec.get("obscured") is not None:
            assert obscured[0]["value"] == rec["obscured"]
        else:
            assert obscured == []  # dataAbsentReason instead of a value
        devices = {o["device"]["reference"] for o in obs.values()}
        assert len(devices) == 1
        device = by_url[devices.pop()]
        assert device["identifier"][0]["value"] == rec["model_id"]
        versions = {v["type"]["coding"][0]["code"]: v["value"] for v in device["version"]}
        assert versions["model-id"] == rec["model_id"]
        cal = rec.get("calibration")
        assert versions.get("calibration-sha256") == (cal["sha256"] if cal else None)
        assert "/srv/models" not in json.dumps(device)  # no path of the screening computer
        media = [by_url[m["link"]["reference"]] for m in report.get("media", [])]
        assert [m["content"]["title"].split(" (")[0] for m in media] == [
            f"field {f['rank']}" for f in rec.get("fields", [])
        ]


def test_outcomes_and_adequacy_codes_per_slide(results_dir: Path, tmp_path: Path) -> None:
    fhir.write_fhir_bundle(results_dir, tmp_path / "b.json", timestamp=WHEN)
    _, by_url = _read(tmp_path / "b.json")

    def adequacy(sid: str) -> str | None:
        obs = _observations(by_url, _report(by_url, sid))["adequacy"]
        concept = obs.get("valueCodeableConcept")
        return concept["coding"][0]["code"] if concept else None

    assert adequacy("review-aaaa") == adequacy("negative-bbbb") == "125152006"
    assert adequacy("scanty-cccc") == "125161006"
    assert adequacy("scored-ffff") is None  # no decision: not performed
    reviewed = _observations(by_url, _report(by_url, "scanty_reviewed-eeee"))
    assert reviewed["triage-outcome"]["valueCodeableConcept"]["coding"][0]["code"] == "review"
    assert reviewed["adequacy"]["valueCodeableConcept"]["coding"][0]["code"] == "125161006"
    assert "goes to review" in reviewed["adequacy"]["note"][0]["text"]
    blank = _observations(by_url, _report(by_url, "blank-dddd"))
    assert blank["triage-outcome"]["valueCodeableConcept"]["coding"][0]["code"] == (
        "not_assessable"
    )
    reasons = _components(blank["triage-outcome"], "reason")
    assert any(r.startswith("not assessable: ") for r in reasons)
    # worst first, as summary.csv: the failed slide's report leads
    reports = [r for r in by_url.values() if r["resourceType"] == "DiagnosticReport"]
    assert reports[0]["identifier"][0]["value"] == "broken-9999"


def test_no_patient_or_specimen_without_a_manifest(results_dir: Path, tmp_path: Path) -> None:
    fhir.write_fhir_bundle(results_dir, tmp_path / "b.json", timestamp=WHEN)
    text = (tmp_path / "b.json").read_text(encoding="utf-8")
    assert '"subject"' not in text and '"specimen"' not in text and "Patient" not in text


def _manifest(path: Path, rows: list[tuple[str, str, str]], header: str) -> Path:
    body = "\n".join(",".join(r) for r in rows)
    path.write_text(f"{header}\n{body}\n", encoding="utf-8")
    return path


def test_manifest_identifiers_become_subject_and_specimen(
    results_dir: Path, tmp_path: Path
) -> None:
    manifest = _manifest(
        tmp_path / "m.csv",
        [("review-aaaa", "x/review.tiff", "positive,P-001,S-77"),
         ("negative-bbbb", "x/negative.tiff", "negative,P-002,"),
         ("gone", "x/gone.tiff", "negative,P-404,S-404")],
        "slide_id,path,label,patient_id,specimen_id",
    )  # fmt: skip
    done = fhir.write_fhir_bundle(
        results_dir,
        tmp_path / "b.json",
        manifest=manifest,
        patient_system="urn:oid:1.2.3",
        timestamp=WHEN,
    )
    _, by_url = _read(tmp_path / "b.json")
    review = _report(by_url, "review-aaaa")
    assert review["subject"] == {
        "type": "Patient",
        "identifier": {"system": "urn:oid:1.2.3", "value": "P-001"},
    }
    assert review["specimen"] == [{"type": "Specimen", "identifier": {"value": "S-77"}}]
    for o in _observations(by_url, review).values():
        assert o["subject"]["identifier"]["value"] == "P-001"
    negative = _report(by_url, "negative-bbbb")
    assert negative["subject"]["identifier"]["value"] == "P-002" and "specimen" not in negative
    assert "subject" not in _report(by_url, "blank-dddd")
    assert "P-404" not in (tmp_path / "b.json").read_text(encoding="utf-8")
    assert any("line 4 (gone)" in w for w in done.warnings)
    assert any("5 slide(s) without a manifest row" in w for w in done.warnings)


def test_two_rows_naming_different_patients_for_one_slide_are_refused(
    results_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    (root / "slides").mkdir(parents=True)
    record = results_dir / "slides" / "review-aaaa" / "result.json"
    data = json.loads(record.read_text())
    data["path"] = str(root / "slides" / "a.tiff")
    record.write_text(json.dumps(data))
    # the first row pairs with the slide by its file, the second by its id
    manifest = _manifest(
        root / "m.csv",
        [("one", "slides/a.tiff", "positive,P-001"),
         ("review-aaaa", "slides/b.tiff", "positive,P-002")],
        "slide_id,path,label,patient_id",
    )  # fmt: skip
    with pytest.raises(BadManifest, match="lines 2 and 3 .* different identifiers"):
        fhir.write_fhir_bundle(results_dir, tmp_path / "b.json", manifest=manifest)
    assert not (tmp_path / "b.json").exists()


def test_field_images_are_linked_relative_to_the_bundle_and_embedded_on_request(
    results_dir: Path, tmp_path: Path
) -> None:
    inside = fhir.write_fhir_bundle(results_dir, timestamp=WHEN)
    assert inside.path == results_dir / "fhir-bundle.json"
    _, by_url = _read(inside.path)
    media = [r for r in by_url.values() if r["resourceType"] == "Media"]
    assert len(media) == sum(len(r.get("fields", [])) for r in RECORDS.values())
    urls = {m["content"]["url"] for m in media}
    assert "slides/review-aaaa/fields/1.png" in urls
    assert all("data" not in m["content"] for m in media)

    out = tmp_path / "elsewhere" / "deep" / "b.json"
    fhir.write_fhir_bundle(results_dir, out, embed_fields=2, timestamp=WHEN)
    _, by_url = _read(out)
    report = _report(by_url, "review-aaaa")
    media = [by_url[m["link"]["reference"]] for m in report["media"]]
    for rank, m in enumerate(media, 1):
        content = m["content"]
        assert content["url"].startswith("../../")
        png = (out.parent / unquote(content["url"])).resolve()
        assert png == (results_dir / "slides" / "review-aaaa" / "fields" / f"{rank}.png").resolve()
        raw = png.read_bytes()
        assert content["size"] == len(raw)
        assert content["hash"] == base64.b64encode(hashlib.sha1(raw).digest()).decode()
        assert (m["width"], m["height"]) == Image.open(png).size
        if rank <= 2:
            assert base64.b64decode(content["data"]) == raw
        else:
            assert "data" not in content


def test_a_field_image_outside_its_slide_folder_is_never_read(
    results_dir: Path, tmp_path: Path
) -> None:
    secret = results_dir / "slides" / "secret.png"
    _png(secret, 8, 8, 7)
    record = results_dir / "slides" / "negative-bbbb" / "result.json"
    data = json.loads(record.read_text())
    data["fields"][0]["image"] = "../secret.png"
    record.write_text(json.dumps(data))
    (results_dir / "slides" / "review-aaaa" / "fields" / "2.png").unlink()
    done = fhir.write_fhir_bundle(results_dir, tmp_path / "b.json", embed_fields=5)
    text = (tmp_path / "b.json").read_text(encoding="utf-8")
    assert "secret" not in text
    assert base64.b64encode(secret.read_bytes()).decode()[:40] not in text
    assert any("outside the slide's folder" in w for w in done.warnings)
    assert any("review-aaaa: field image fields/2.png not found" in w for w in done.warnings)


def test_the_same_folder_exports_the_same_bytes(results_dir: Path, tmp_path: Path) -> None:
    a = fhir.write_fhir_bundle(results_dir, tmp_path / "a.json", timestamp=WHEN).path
    b = fhir.write_fhir_bundle(results_dir, tmp_path / "b.json", timestamp=WHEN).path
    assert a.read_bytes() == b.read_bytes()


def test_folders_that_are_not_results_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotAResultsFolder):
        fhir.write_fhir_bundle(tmp_path, tmp_path / "b.json")
    (tmp_path / "slides").mkdir()
    with pytest.raises(CytoscreenError, match="no slide results"):
        fhir.write_fhir_bundle(tmp_path, tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()
