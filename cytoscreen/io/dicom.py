"""DICOM whole-slide series: which folder is a slide, and is the series whole.

A DICOM VL Whole Slide Microscopy Image slide is a *series* of instances (one or more files
per pyramid level, plus label and overview images), kept one series per folder. Here the
folder is the slide: ``series_of`` maps a folder (or one of its ``.dcm`` files) to the
``DicomSeries`` it holds after reading only the headers (pydicom, no pixel data), and refuses,
naming the file, what would otherwise be read wrongly or fail later:

* a ``.dcm`` file that is not DICOM, or a DICOM object that is not a VL Whole Slide
  Microscopy Image (a CT slice, a report, an annotation object);
* a folder holding more than one series (two slides, or a slide and a re-scan);
* a series with missing instances: a part of a concatenation (one level split over several
  files), or the full-resolution level itself (only reduced levels are present), or a level
  with fewer frames than its tiled size needs;
* pixels that are not 8-bit RGB colour (fluorescence, greyscale).

Identity fields (patient name and ID, dates, barcodes) are read by nobody here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytoscreen.errors import UnreadableSlide
from cytoscreen.io.checks import FORMAT_HINT

DICOM_SUFFIX = ".dcm"
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
COLOUR_PHOTOMETRICS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
SERIES_HINT = (
    "keep each slide's DICOM series (all its .dcm files, nothing else) in a folder of its own"
)
MISSING_HINT = "copy the whole series again from the archive or scanner"

_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "ImageType",
    "Rows",
    "Columns",
    "TotalPixelMatrixRows",
    "TotalPixelMatrixColumns",
    "NumberOfFrames",
    "DimensionOrganizationType",
    "TotalPixelMatrixFocalPlanes",
    "NumberOfOpticalPaths",
    "SamplesPerPixel",
    "BitsStored",
    "PhotometricInterpretation",
    "ConcatenationUID",
    "InConcatenationNumber",
    "InConcatenationTotalNumber",
    "OpticalPathSequence",
]


@dataclass(frozen=True)
class DicomInstance:
    """The header facts of one ``.dcm`` file of a series."""

    path: Path
    series_uid: str
    sop_instance_uid: str
    flavour: str  # the third value of Image Type: VOLUME, LABEL, OVERVIEW, THUMBNAIL...
    resampled: bool  # Image Type's fourth value is RESAMPLED (a reduced pyramid level)
    width: int  # total pixel matrix columns
    height: int
    frames: int
    tiled_frames: int  # frames a TILED_FULL instance of this size needs (0: not checked)
    concatenation: str | None
    part: int  # 1-based place in its concatenation (1 when not concatenated)
    parts: int
    objective_power: float | None = None


@dataclass(frozen=True)
class DicomSeries:
    """One whole-slide series in one folder."""

    folder: Path
    series_uid: str
    instances: tuple[DicomInstance, ...]

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(sorted({i.path for i in self.instances}))

    @property
    def base(self) -> DicomInstance:
        """The first file of the full-resolution level (what OpenSlide is pointed at)."""
        volumes = [i for i in self.instances if i.flavour == "VOLUME"]
        return min(volumes, key=lambda i: (-i.width * i.height, i.part, i.path.name))

    @property
    def objective_power(self) -> float | None:
        return self.base.objective_power


def dicom_files(folder: Path) -> list[Path]:
    """The ``.dcm`` files directly in ``folder`` (not in subfolders; hidden ones skipped)."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [
        p
        for p in entries
        if p.name.lower().endswith(DICOM_SUFFIX) and not p.name.startswith(".") and p.is_file()
    ]


def is_dicom_slide(path: str | Path) -> bool:
    """A folder holding ``.dcm`` files, or a ``.dcm`` file (whose folder is then the slide)."""
    p = Path(path)
    if p.is_dir():
        return bool(dicom_files(p))
    return p.name.lower().endswith(DICOM_SUFFIX)


def slide_folder(path: str | Path) -> Path:
    """The folder that is the slide: ``path`` itself, or the folder of a ``.dcm`` file."""
    p = Path(path)
    return p if p.is_dir() else p.parent


def _read_header(path: Path) -> DicomInstance:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    except InvalidDicomError as exc:
        raise UnreadableSlide(f"not a DICOM file ({exc})", subject=path, hint=SERIES_HINT) from exc
    except (OSError, ValueError, EOFError, AttributeError, KeyError, TypeError) as exc:
        raise UnreadableSlide(
            f"cannot read its DICOM header ({type(exc).__name__}: {exc})",
            subject=path,
            hint="the file may be truncated or damaged; " + MISSING_HINT,
        ) from exc
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != WSI_SOP_CLASS:
        name = _uid_name(sop_class)
        raise UnreadableSlide(
            f"it is a DICOM {name} object, not a VL Whole Slide Microscopy image",
            subject=path,
            hint=SERIES_HINT,
        )
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    flavour = image_type[2] if len(image_type) > 2 else ""
    width = int(ds.get("TotalPixelMatrixColumns") or ds.get("Columns") or 0)
    height = int(ds.get("TotalPixelMatrixRows") or ds.get("Rows") or 0)
    frames = int(ds.get("NumberOfFrames") or 1)
    tiled_frames = 0
    if str(ds.get("DimensionOrganizationType", "")).upper() == "TILED_FULL":
        cols, rows = int(ds.get("Columns") or 0), int(ds.get("Rows") or 0)
        if cols > 0 and rows > 0:
            planes = int(ds.get("TotalPixelMatrixFocalPlanes") or 1)
            paths = int(ds.get("NumberOfOpticalPaths") or 1)
            tiled_frames = math.ceil(width / cols) * math.ceil(height / rows) * planes * paths
    if flavour == "VOLUME":
        _check_pixels(path, ds)
    concatenation = ds.get("ConcatenationUID")
    return DicomInstance(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_instance_uid=str(ds.get("SOPInstanceUID", path.name)),
        flavour=flavour,
        resampled=len(image_type) > 3 and image_type[3] == "RESAMPLED",
        width=width,
        height=height,
        frames=frames,
        tiled_frames=tiled_frames,
        concatenation=str(concatenation) if concatenation else None,
        part=int(ds.get("InConcatenationNumber") or 1),
        parts=int(ds.get("InConcatenationTotalNumber") or 1),
        objective_power=_objective_power(ds),
    )


def _objective_power(ds: Any) -> float | None:
    for path in ds.get("OpticalPathSequence") or []:
        try:
            value = float(path.get("ObjectiveLensPower"))
        except (TypeError, ValueError):
            continue
        if value > 0:
            return value
    return None


def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    if not uid:
        return "(no SOP class)"
    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else uid


def _check_pixels(path: Path, ds: Any) -> None:
    photometric = str(getattr(ds, "PhotometricInterpretation", "")).upper()
    samples = int(getattr(ds, "SamplesPerPixel", 0) or 0)
    bits = int(getattr(ds, "BitsStored", 0) or 0)
    if photometric not in COLOUR_PHOTOMETRICS or samples != 3:
        raise UnreadableSlide(
            f"its pixels are {photometric or 'of no stated kind'} ({samples} sample(s) per "
            "pixel), not RGB colour",
            subject=path,
            hint=FORMAT_HINT,
        )
    if bits != 8:
        raise UnreadableSlide(
            f"its pixels are {bits}-bit samples, not 8-bit", subject=path, hint=FORMAT_HINT
        )


def series_of(path: str | Path) -> DicomSeries:
    """The one whole-slide series in ``path`` (a folder, or a ``.dcm`` file in it), checked.

    Raises ``UnreadableSlide`` naming the file at fault (or the folder): see the module
    docstring for the rules.
    """
    folder = slide_folder(path)
    files = dicom_files(folder)
    if not files:
        raise UnreadableSlide(
            "no DICOM (.dcm) files in the folder", subject=folder, hint=SERIES_HINT
        )
    instances = [_read_header(f) for f in files]
    by_series: dict[str, list[DicomInstance]] = defaultdict(list)
    for inst in instances:
        by_series[inst.series_uid].append(inst)
    if len(by_series) > 1:
        examples = ", ".join(group[0].path.name for group in by_series.values())
        raise UnreadableSlide(
            f"the folder holds {len(by_series)} DICOM series, not one slide "
            f"(one file of each: {examples})",
            subject=folder,
            hint=SERIES_HINT,
        )
    ((uid, members),) = by_series.items()
    unique = list({i.sop_instance_uid: i for i in members}.values())  # extra copies ignored
    _check_complete(folder, unique)
    return DicomSeries(folder=folder, series_uid=uid, instances=tuple(unique))


def _check_complete(folder: Path, instances: list[DicomInstance]) -> None:
    volumes = [i for i in instances if i.flavour == "VOLUME"]
    if not volumes:
        raise UnreadableSlide(
            "the series has no pyramid level (only label, overview or other images)",
            subject=folder,
            hint=MISSING_HINT,
        )
    concatenations: dict[str, list[DicomInstance]] = defaultdict(list)
    for inst in volumes:
        if inst.concatenation:
            concatenations[inst.concatenation].append(inst)
    for parts in concatenations.values():
        total = max(p.parts for p in parts)
        missing = sorted(set(range(1, total + 1)) - {p.part for p in parts})
        if missing:
            present = ", ".join(p.path.name for p in sorted(parts, key=lambda p: p.part))
            raise UnreadableSlide(
                f"part(s) {', '.join(map(str, missing))} of {total} of the "
                f"{parts[0].width} x {parts[0].height} px level are missing (present: "
                f"{present})",
                subject=folder,
                hint=MISSING_HINT,
            )
        needed = parts[0].tiled_frames
        have = sum(p.frames for p in parts)
        if needed and have < needed:
            raise UnreadableSlide(
                f"the {parts[0].width} x {parts[0].height} px level has {have} of its "
                f"{needed} tiles",
                subject=parts[0].path,
                hint=MISSING_HINT,
            )
    for inst in volumes:
        if not inst.concatenation and inst.tiled_frames and inst.frames < inst.tiled_frames:
            raise UnreadableSlide(
                f"the {inst.width} x {inst.height} px level has {inst.frames} of its "
                f"{inst.tiled_frames} tiles",
                subject=inst.path,
                hint=MISSING_HINT,
            )
    largest = max(volumes, key=lambda i: i.width * i.height)
    if largest.resampled and not any(
        not i.resampled and i.width * i.height == largest.width * largest.height for i in volumes
    ):
        raise UnreadableSlide(
            f"the full-resolution level is missing: the largest level present "
            f"({largest.width} x {largest.height} px, {largest.path.name}) is a reduced "
            "(RESAMPLED) one",
            subject=folder,
            hint=MISSING_HINT,
        )
