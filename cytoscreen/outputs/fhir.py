"""A results folder as one FHIR R4 Bundle: a DiagnosticReport per slide, for a laboratory system.

Every resource is built and validated with the ``fhir.resources`` models of FHIR R4B (4.3.0),
which is R4 (4.0.1) unchanged for every resource written here (Bundle, DiagnosticReport,
Observation, Media, Device; docs/usage.md says why R4B's models stand in for R4's).

One Bundle of type ``collection`` per results folder (the batch, as summary.csv covers it):

- per slide a DiagnosticReport (LOINC 47528-5), status ``preliminary``: decision support, to be
  confirmed by a cytologist; its Observations give the triage outcome (with every reason and
  warning as a component), the slide score (with the threshold, the rule and the patch counts),
  the cellularity (with the obscured share) and the adequacy (SNOMED CT findings); the ranked
  field images are Media resources whose attachments point at the PNG files by URL, relative
  to the bundle's own folder (the first ``embed`` also carry their bytes);
- a slide that failed to screen is a DiagnosticReport with status ``cancelled`` and the error as
  its conclusion, with no Observation: the laboratory sees that the slide was not screened;
- the model and calibration that made the observations are a Device (one per distinct model,
  calibration, rule and threshold in the folder), referenced by each Observation's ``device``
  (R4's DiagnosticReport has no element that references a Device).

No patient data is invented or taken from a slide: ``subject`` (Patient) and ``specimen`` are
written only when a manifest row gives ``patient_id`` / ``specimen_id`` for the slide, as
logical references (an identifier, no resource). Resource ids are UUIDs derived from the slide
record, so the same folder exports the same resources.

The pure part builds resources from :class:`SlideEntry` values; :func:`write_fhir_bundle` reads
the folder, the manifest and the field images and writes the bundle atomically.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.attachment import Attachment
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.device import Device, DeviceDeviceName, DeviceProperty, DeviceVersion
from fhir.resources.R4B.diagnosticreport import DiagnosticReport, DiagnosticReportMedia
from fhir.resources.R4B.domainresource import DomainResource
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.media import Media
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference

from cytoscreen.errors import BadManifest, CytoscreenError
from cytoscreen.fsutil import write_text_atomic
from cytoscreen.manifest import read_manifest
from cytoscreen.outputs.summary import sort_key
from cytoscreen.slide.decide import adequacy_findings
from cytoscreen.slide_result import SlideResult, load_result_files, match_manifest
from cytoscreen.types import Outcome

DEFAULT_NAME = "fhir-bundle.json"  # written into the results folder without --out

# Standard code systems
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
SECTIONS = "http://terminology.hl7.org/CodeSystem/v2-0074"  # diagnostic service sections
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"
# Local code systems and identifier systems, where no standard code fits
LOCAL = "https://cytoscreen.example/fhir"
OBSERVATION_CODES = f"{LOCAL}/CodeSystem/observation"
OUTCOME_CODES = f"{LOCAL}/CodeSystem/triage-outcome"
DEVICE_CODES = f"{LOCAL}/CodeSystem/device"
SLIDE_IDS = f"{LOCAL}/NamingSystem/slide-id"  # the results folder's slide id
MODEL_IDS = f"{LOCAL}/NamingSystem/model-id"

Code = tuple[str, str, str]  # system, code, display
REPORT_CODE: Code = (
    LOINC,
    "47528-5",
    "Cytology report of Cervical or vaginal smear or scraping Cyto stain",
)
REPORT_CATEGORY: Code = (SECTIONS, "CP", "Cytopathology")
LABORATORY: Code = (OBSERVATION_CATEGORY, "laboratory", "Laboratory")
IMAGE: Code = (MEDIA_TYPE, "image", "Image")
SATISFACTORY: Code = (SNOMED, "125152006", "Specimen satisfactory for evaluation (finding)")
UNSATISFACTORY: Code = (SNOMED, "125154007", "Specimen unsatisfactory for evaluation (finding)")
SCANT: Code = (
    SNOMED,
    "125161006",
    "Unsatisfactory for evaluation due to scant squamous epithelial component (finding)",
)
NOT_PERFORMED: Code = (DATA_ABSENT, "not-performed", "Not Performed")
UNKNOWN: Code = (DATA_ABSENT, "unknown", "Unknown")

OUTCOME_DISPLAY = {
    Outcome.NEGATIVE: "Negative: below the calibrated review threshold",
    Outcome.REVIEW: "Review: at or above the calibrated review threshold, a cytologist reads it",
    Outcome.NOT_ASSESSABLE: "Not assessable by cytoscreen",
}
OBSERVATIONS = {  # the local observation and component codes
    "triage-outcome": "cytoscreen triage outcome (decision support)",
    "reason": "Reason for the triage outcome",
    "warning": "Warning about the slide's screening",
    "slide-score": "cytoscreen slide score (0-1, aggregate of patch probabilities of abnormal)",
    "review-threshold": "Calibrated review threshold: a slide scoring at or above it is reviewed",
    "aggregation-rule": "Rule that made the slide score from the patch scores",
    "patches": "Cell-bearing patches on the slide",
    "patches-scored": "Patches scored",
    "patches-unreadable": "Patches that could not be read",
    "cellularity": "Estimated squamous cells on the slide (nuclei counted by cytoscreen)",
    "obscured-share": "Estimated share of the cell-bearing area under blood or thick overlap",
    "adequacy": "Specimen adequacy by cytoscreen's cell-count and obscured-area rules",
}
DEVICE_PARTS = {  # the local Device type, version types and property types
    "screening-software": "Cervical cytology slide screening software (decision support)",
    "software-version": "cytoscreen version",
    "model-id": "Patch model id",
    "aggregation-rule": "Slide score rule",
    "calibration-sha256": "SHA-256 of the calibration file",
    "review-threshold": "Calibrated review threshold",
    "target-sensitivity": "Slide-level sensitivity the threshold was calibrated for",
}
DEVICE_NOTE = (
    "Research-use decision support: every report it makes is preliminary and is confirmed or "
    "corrected by a cytologist."
)


def _coding(code: Code) -> Coding:
    return Coding(system=code[0], code=code[1], display=code[2])


def _concept(code: Code, text: str | None = None) -> CodeableConcept:
    return CodeableConcept(coding=[_coding(code)], text=text)


def _observation_code(code: str) -> CodeableConcept:
    return _concept((OBSERVATION_CODES, code, OBSERVATIONS[code]))


def _device_code(code: str) -> CodeableConcept:
    return _concept((DEVICE_CODES, code, DEVICE_PARTS[code]))


def _share(value: float) -> Quantity:
    """A dimensionless value (a score, a share 0-1): UCUM unit 1."""
    return Quantity(value=value, unit="1", system=UCUM, code="1")


def _absent(code: Code, text: str | None) -> CodeableConcept:
    return _concept(code, text)


def _instant(text: str | None) -> str | None:
    """An ISO time with its zone (FHIR instant), or None for a missing or zone-less one."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.isoformat() if when.tzinfo is not None else None


# ---------------------------------------------------------------- what the builders take


@dataclass(frozen=True)
class SubjectIds:
    """A slide's patient and specimen identifiers, as a manifest gives them (None: not given)."""

    patient: str | None = None
    specimen: str | None = None
    patient_system: str | None = None
    specimen_system: str | None = None


@dataclass(frozen=True)
class FieldImage:
    """A ranked field's PNG as the bundle refers to it."""

    rank: int
    score: float | None
    url: str  # relative to the bundle's folder
    box: tuple[int, int, int, int] | None = None  # level-0 x0, y0, x1, y1
    size: int | None = None  # bytes
    sha1: str | None = None  # base64 SHA-1 of the bytes (R4 Attachment.hash)
    width: int | None = None
    height: int | None = None
    data: bytes | None = None  # the PNG itself, when embedded


@dataclass(frozen=True)
class SlideEntry:
    """One slide's record with what the bundle adds to it."""

    result: SlideResult
    images: tuple[FieldImage, ...] = ()
    ids: SubjectIds = SubjectIds()


# ---------------------------------------------------------------- resources


def resource_uuid(result: SlideResult, kind: str) -> str:
    """A resource's id: a UUID from the slide record (id, content key, finish time) and
    ``kind``, so an export of the same folder gives the same ids."""
    name = f"{LOCAL}/{result.id}/{result.slide_key or ''}/{result.finished or ''}/{kind}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def _url(resource_id: str) -> str:
    return f"urn:uuid:{resource_id}"


def _logical(kind: str, value: str | None, system: str | None) -> Reference | None:
    if not value:
        return None
    return Reference(type=kind, identifier=Identifier(system=system, value=value))


@dataclass(frozen=True)
class _Context:
    """What every resource of one slide shares."""

    subject: Reference | None
    specimen: Reference | None
    issued: str | None
    device: Reference | None


def device_key(result: SlideResult) -> tuple[str, ...] | None:
    """What tells two Devices apart: cytoscreen's version, the model, the calibration file,
    rule and threshold (None without a model id: a failed slide)."""
    if not result.model_id:
        return None
    cal = result.calibration or {}
    return (
        result.version or "",
        result.model_id,
        str(cal.get("sha256") or result.calibration_sha256 or ""),
        str(cal.get("rule") or result.rule or ""),
        str(cal.get("threshold", "")),
    )


def build_device(result: SlideResult) -> Device:
    """The software that made a slide's observations: cytoscreen, the model and its calibration
    (sha256, rule, threshold, target sensitivity). Paths on the screening computer are left
    out."""
    cal = result.calibration or {}
    versions = [("software-version", result.version), ("model-id", result.model_id)]
    versions += [
        ("aggregation-rule", cal.get("rule") or result.rule),
        ("calibration-sha256", cal.get("sha256") or result.calibration_sha256),
    ]
    properties = [
        DeviceProperty(type=_device_code(code), valueQuantity=[_share(float(cal[key]))])
        for code, key in (
            ("review-threshold", "threshold"),
            ("target-sensitivity", "target_sensitivity"),
        )
        if isinstance(cal.get(key), int | float)
    ]
    key = "/".join(device_key(result) or ())
    return Device(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{LOCAL}/device/{key}")),
        status="active",
        identifier=[Identifier(system=MODEL_IDS, value=result.model_id)],
        deviceName=[
            DeviceDeviceName(name="cytoscreen", type="user-friendly-name"),
            DeviceDeviceName(name=result.model_id, type="model-name"),
        ],
        type=_device_code("screening-software"),
        version=[
            DeviceVersion(type=_device_code(code), value=str(value))
            for code, value in versions
            if value
        ]
        or None,
        property=properties or None,
        note=[Annotation(text=DEVICE_NOTE)],
    )


def _observation(
    result: SlideResult, code: str, ctx: _Context, **content: Any
) -> tuple[str, Observation]:
    rid = resource_uuid(result, f"observation/{code}")
    obs = Observation(
        id=rid,
        status="preliminary",
        category=[_concept(LABORATORY)],
        code=_observation_code(code),
        subject=ctx.subject,
        specimen=ctx.specimen,
        issued=ctx.issued,
        device=ctx.device,
        **content,
    )
    return _url(rid), obs


def _text_component(code: str, text: str) -> ObservationComponent:
    return ObservationComponent(code=_observation_code(code), valueString=text)


def outcome_observation(result: SlideResult, ctx: _Context) -> tuple[str, Observation]:
    """The triage outcome, every reason and warning a component (absent in a scores-only
    run: no calibration, no decision)."""
    parts = [_text_component("reason", r) for r in result.reasons]
    parts += [_text_component("warning", w) for w in result.warnings]
    if result.outcome is None:
        value: dict[str, Any] = {
            "dataAbsentReason": _absent(NOT_PERFORMED, "; ".join(result.reasons) or None)
        }
    else:
        display = OUTCOME_DISPLAY[result.outcome]
        concept = _concept((OUTCOME_CODES, result.outcome.value, display), display)
        value = {"valueCodeableConcept": concept}
    return _observation(result, "triage-outcome", ctx, component=parts or None, **value)


def score_observation(result: SlideResult, ctx: _Context) -> tuple[str, Observation]:
    """The slide score with the threshold, the rule and the patch counts as components."""
    parts = []
    if result.threshold is not None:
        parts.append(
            ObservationComponent(
                code=_observation_code("review-threshold"), valueQuantity=_share(result.threshold)
            )
        )
    if result.rule:
        parts.append(_text_component("aggregation-rule", result.rule))
    counts = result.counts or {}
    for code, key in (
        ("patches", "n_patches"),
        ("patches-scored", "n_scored"),
        ("patches-unreadable", "n_unreadable"),
    ):
        if isinstance(counts.get(key), int):
            parts.append(
                ObservationComponent(code=_observation_code(code), valueInteger=counts[key])
            )
    value: dict[str, Any] = (
        {"valueQuantity": _share(result.score)}
        if result.score is not None
        else {"dataAbsentReason": _absent(NOT_PERFORMED, "no patch was scored")}
    )
    return _observation(result, "slide-score", ctx, component=parts or None, **value)


def cellularity_observation(result: SlideResult, ctx: _Context) -> tuple[str, Observation]:
    """Cells counted, with the estimated obscured share (unknown when not measured)."""
    obscured = (
        ObservationComponent(
            code=_observation_code("obscured-share"), valueQuantity=_share(result.obscured)
        )
        if result.obscured is not None
        else ObservationComponent(
            code=_observation_code("obscured-share"),
            dataAbsentReason=_absent(UNKNOWN, "not measured"),
        )
    )
    value: dict[str, Any] = (
        {
            "valueQuantity": Quantity(
                value=result.cellularity, unit="cells", system=UCUM, code="{cells}"
            )
        }
        if result.cellularity is not None
        else {"dataAbsentReason": _absent(UNKNOWN, "not counted")}
    )
    return _observation(result, "cellularity", ctx, component=[obscured], **value)


def adequacy_code(result: SlideResult) -> Code | None:
    """The SNOMED CT finding of the adequacy rules (cell count, obscured share) as the
    decision applied them; None when no decision was made (scores only)."""
    if result.outcome is None:
        return None
    found = adequacy_findings(result.reasons, result.warnings)
    if found.adequate:
        return SATISFACTORY
    return SCANT if found.too_few_cells and not found.mostly_obscured else UNSATISFACTORY


def adequacy_observation(result: SlideResult, ctx: _Context) -> tuple[str, Observation]:
    code = adequacy_code(result)
    if code is None:
        return _observation(
            result,
            "adequacy",
            ctx,
            dataAbsentReason=_absent(NOT_PERFORMED, "scores only: no triage decision was made"),
        )
    notes = []
    if adequacy_findings(result.reasons, result.warnings).overridden:
        notes.append(
            Annotation(
                text="The slide scores at or above the review threshold, so it goes to review "
                "although the adequacy rules are not met (Bethesda: abnormal cells make a "
                "specimen satisfactory)."
            )
        )
    return _observation(
        result, "adequacy", ctx, valueCodeableConcept=_concept(code), note=notes or None
    )


def media_resource(result: SlideResult, image: FieldImage, ctx: _Context) -> tuple[str, Media]:
    """A field image: its PNG by relative URL (and its bytes when embedded)."""
    rid = resource_uuid(result, f"media/{image.rank}")
    title = f"field {image.rank}" + (f" (p={image.score:.4g})" if image.score is not None else "")
    note = None
    if image.box is not None:
        x0, y0, x1, y1 = image.box
        note = [Annotation(text=f"{title}: level-0 pixels x {x0}-{x1}, y {y0}-{y1} of the slide")]
    content = Attachment(
        contentType="image/png",
        url=image.url,
        size=image.size,
        hash=image.sha1,
        title=title,
        data=base64.b64encode(image.data).decode("ascii") if image.data is not None else None,
    )
    media = Media(
        id=rid,
        status="completed",
        type=_concept(IMAGE),
        subject=ctx.subject,
        issued=ctx.issued,
        width=image.width,
        height=image.height,
        content=content,
        note=note,
    )
    return _url(rid), media


def _conclusion(result: SlideResult) -> str:
    if result.outcome is None:
        head = "cytoscreen scores only (no calibration, no triage decision)"
    else:
        head = f"cytoscreen triage: {OUTCOME_DISPLAY[result.outcome]}"
    head += " (decision support, preliminary: to be confirmed by a cytologist)"
    return head + (": " + "; ".join(result.reasons) if result.reasons else "")


def slide_resources(
    entry: SlideEntry, device: Reference | None = None
) -> list[tuple[str, DomainResource]]:
    """The slide's DiagnosticReport first, then its Observations and Media, with their full
    URLs. A failed slide is a cancelled report alone."""
    r, ids = entry.result, entry.ids
    ctx = _Context(
        subject=_logical("Patient", ids.patient, ids.patient_system),
        specimen=_logical("Specimen", ids.specimen, ids.specimen_system),
        issued=_instant(r.finished),
        device=device,
    )
    rid = resource_uuid(r, "report")
    common: dict[str, Any] = {
        "id": rid,
        "identifier": [Identifier(system=SLIDE_IDS, value=r.id)],
        "category": [_concept(REPORT_CATEGORY)],
        "code": _concept(REPORT_CODE),
        "subject": ctx.subject,
        "specimen": [ctx.specimen] if ctx.specimen is not None else None,
        "issued": ctx.issued,
    }
    if r.failed:
        report = DiagnosticReport(
            status="cancelled",
            conclusion=f"cytoscreen could not screen this slide: {r.error or 'unknown error'}",
            **common,
        )
        return [(_url(rid), report)]
    observations = [
        build(r, ctx)
        for build in (
            outcome_observation,
            score_observation,
            cellularity_observation,
            adequacy_observation,
        )
    ]
    media = [media_resource(r, image, ctx) for image in entry.images]
    conclusion_code = (
        [_concept((OUTCOME_CODES, r.outcome.value, OUTCOME_DISPLAY[r.outcome]))]
        if r.outcome is not None
        else None
    )
    report = DiagnosticReport(
        status="preliminary",
        result=[Reference(reference=url) for url, _ in observations],
        media=[
            DiagnosticReportMedia(comment=m.content.title, link=Reference(reference=url))
            for url, m in media
        ]
        or None,
        conclusion=_conclusion(r),
        conclusionCode=conclusion_code,
        **common,
    )
    return [(_url(rid), report), *observations, *media]


def build_bundle(entries: Sequence[SlideEntry], *, timestamp: datetime) -> Bundle:
    """One ``collection`` Bundle: the Devices first, then each slide's report and its
    resources, in ``entries`` order."""
    devices: dict[tuple[str, ...], tuple[str, Device]] = {}
    slides: list[tuple[str, DomainResource]] = []
    for entry in entries:
        key = device_key(entry.result)
        ref = None
        if key is not None and not entry.result.failed:
            if key not in devices:
                device = build_device(entry.result)
                devices[key] = (_url(str(device.id)), device)
            ref = Reference(reference=devices[key][0])
        slides += slide_resources(entry, ref)
    listed = [*devices.values(), *slides]
    bundle_id = uuid.uuid5(
        uuid.NAMESPACE_URL, f"{LOCAL}/bundle/{timestamp.isoformat()}/{[u for u, _ in listed]}"
    )
    return Bundle(
        id=str(bundle_id),
        type="collection",
        timestamp=timestamp.isoformat(),
        entry=[BundleEntry(fullUrl=url, resource=res) for url, res in listed] or None,
    )


# ---------------------------------------------------------------- reading and writing


def relative_url(path: Path, base: Path) -> str:
    """``path`` as a URL relative to the folder ``base`` (a file URI where none can be made,
    e.g. another drive)."""
    try:
        rel = os.path.relpath(path, base)
    except ValueError:
        return path.resolve().as_uri()
    return quote(rel.replace(os.sep, "/"))


def _png_size(data: bytes) -> tuple[int | None, int | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height
    except (UnidentifiedImageError, OSError):
        return None, None


def _box(corners: list[int]) -> tuple[int, int, int, int] | None:
    """x0, y0, x1, y1 when the field row gives all four as integers."""
    if len(corners) != 4:
        return None
    x0, y0, x1, y1 = corners
    return x0, y0, x1, y1


def field_images(
    slide_dir: Path, result: SlideResult, base: Path, embed: int = 0
) -> tuple[tuple[FieldImage, ...], list[str]]:
    """The record's field images found in ``slide_dir`` (URLs relative to ``base``, the
    bundle's folder; the first ``embed`` with their bytes) and a warning per image that is
    missing or lies outside the slide's folder (never read)."""
    images, warnings = [], []
    inside = slide_dir.resolve()
    for i, row in enumerate(result.fields):
        name, rank = row.get("image"), row.get("rank")
        if not isinstance(name, str) or not name:
            continue
        path = (slide_dir / name).resolve()
        if not path.is_relative_to(inside):
            warnings.append(f"{result.id}: field image {name!r} lies outside the slide's folder")
            continue
        try:
            data = path.read_bytes()
        except OSError:
            warnings.append(f"{result.id}: field image {name} not found")
            continue
        width, height = _png_size(data)
        corners = [row.get(k) for k in ("x0", "y0", "x1", "y1")]
        box = _box([c for c in corners if isinstance(c, int)])
        score = row.get("score")
        images.append(
            FieldImage(
                rank=rank if isinstance(rank, int) else i + 1,
                score=float(score) if isinstance(score, int | float) else None,
                url=relative_url(path, base),
                box=box,
                size=len(data),
                sha1=base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),
                width=width,
                height=height,
                data=data if i < embed else None,
            )
        )
    return tuple(images), warnings


PATIENT_COLUMN = "patient_id"
SPECIMEN_COLUMN = "specimen_id"


def manifest_ids(
    manifest: str | Path,
    results: Sequence[SlideResult],
    *,
    patient_system: str | None = None,
    specimen_system: str | None = None,
) -> tuple[dict[str, SubjectIds], list[str]]:
    """Each slide's patient and specimen identifiers from a labelled manifest's
    ``patient_id`` / ``specimen_id`` columns (rows paired with results by
    :func:`match_manifest`), and warnings for what could not be paired. Two rows that pair
    with one slide and disagree are refused: a report must not name the wrong patient."""
    rows = read_manifest(manifest, check_files=False).rows
    warnings = []
    if not any(PATIENT_COLUMN in r.extra or SPECIMEN_COLUMN in r.extra for r in rows):
        warnings.append(
            f"{manifest}: no {PATIENT_COLUMN} or {SPECIMEN_COLUMN} column: the reports name no "
            "patient or specimen"
        )
    found: dict[str, SubjectIds] = {}
    lines: dict[str, int] = {}
    for row, result in zip(rows, match_manifest(rows, results), strict=True):
        if result is None:
            warnings.append(f"{manifest}: line {row.line} ({row.slide_id}) has no screened slide")
            continue
        ids = SubjectIds(
            patient=row.extra.get(PATIENT_COLUMN) or None,
            specimen=row.extra.get(SPECIMEN_COLUMN) or None,
            patient_system=patient_system,
            specimen_system=specimen_system,
        )
        if result.id in found and found[result.id] != ids:
            raise BadManifest(
                f"lines {lines[result.id]} and {row.line} pair with the same slide "
                f"{result.id} and give different identifiers",
                subject=manifest,
                hint="keep one row per slide",
            )
        found[result.id], lines[result.id] = ids, row.line
    unpaired = [r.id for r in results if r.id not in found]
    if unpaired:
        listed = ", ".join(unpaired[:5]) + (", ..." if len(unpaired) > 5 else "")
        warnings.append(
            f"{len(unpaired)} slide(s) without a manifest row, written with no patient or "
            f"specimen: {listed}"
        )
    return found, warnings


@dataclass(frozen=True)
class FhirExport:
    """What :func:`write_fhir_bundle` wrote."""

    path: Path
    states: dict[str, int]  # reports per slide state (review, negative, ..., failed)
    warnings: tuple[str, ...]

    @property
    def n_reports(self) -> int:
        return sum(self.states.values())


def write_fhir_bundle(
    results_dir: str | Path,
    out: str | Path | None = None,
    *,
    manifest: str | Path | None = None,
    embed_fields: int = 0,
    patient_system: str | None = None,
    specimen_system: str | None = None,
    timestamp: datetime | None = None,
) -> FhirExport:
    """Write the results folder's bundle to ``out`` (default ``RESULTS/fhir-bundle.json``),
    atomically. Raises NotAResultsFolder / UnreadableResult for a folder or record that cannot
    be read, BadManifest for a manifest that cannot, CytoscreenError for a folder with no
    slide, WriteFailed when ``out`` cannot be written."""
    files = load_result_files(results_dir)
    if not files:
        raise CytoscreenError(
            "no slide results here yet",
            subject=results_dir,
            hint="screen slides into it first (`cytoscreen screen SLIDES --out RESULTS`)",
        )
    if embed_fields < 0:
        raise CytoscreenError("cannot embed a negative number of images", subject="--embed-fields")
    target = Path(out) if out is not None else Path(results_dir) / DEFAULT_NAME
    base = target.resolve().parent
    results = [result for _, result in files]
    warnings: list[str] = []
    ids: dict[str, SubjectIds] = {}
    if manifest is not None:
        ids, said = manifest_ids(
            manifest, results, patient_system=patient_system, specimen_system=specimen_system
        )
        warnings += said
    entries = []
    for slide_dir, result in sorted(files, key=lambda f: sort_key(f[1])):
        images, said = field_images(slide_dir, result, base, embed_fields)
        warnings += said
        entries.append(SlideEntry(result, images, ids.get(result.id, SubjectIds())))
    failed = [r.id for r in results if r.failed]
    if failed:
        warnings.append(
            f"{len(failed)} slide(s) failed to screen, written as cancelled reports: "
            + ", ".join(failed)
        )
    bundle = build_bundle(entries, timestamp=timestamp or datetime.now(UTC))
    write_text_atomic(target, bundle.model_dump_json(indent=2) + "\n")
    states = Counter(r.state for r in results)
    return FhirExport(target, dict(states), tuple(warnings))
