"""DICOM whole-slide series made at test time from generated slides, good and broken ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from cytoscreen.synth.dicomwriter import tiff_to_dicom

PATIENT = "Synthetic^Patient"  # what the writer puts in every instance: never to be shown


def label_image() -> npt.NDArray[np.uint8]:
    """A 120 x 360 px "label" (barcode-like stripes) and a different overview."""
    label = np.full((120, 360, 3), 250, np.uint8)
    label[20:100, 30:330:12] = (10, 10, 10)
    return label


def overview_image() -> npt.NDArray[np.uint8]:
    overview = np.full((90, 240, 3), (200, 180, 220), np.uint8)
    overview[30:60, 40:200] = (90, 40, 120)
    return overview


def convert(tiff: Path, folder: Path, **kwargs: object) -> Path:
    """``tiff`` as one DICOM series in ``folder`` (label and overview included)."""
    kwargs.setdefault("label", label_image())
    kwargs.setdefault("overview", overview_image())
    tiff_to_dicom(tiff, folder, **kwargs)
    return folder


def two_series(tiff: Path, folder: Path) -> Path:
    """Two whole series (two slides) in one folder."""
    convert(tiff, folder, prefix="a-")
    convert(tiff, folder, prefix="b-")
    return folder


def missing_part(tiff: Path, folder: Path) -> Path:
    """Level 0 written as a concatenation of 3 instances, the second one lost."""
    convert(tiff, folder, base_parts=3)
    (folder / "level-0-2.dcm").unlink()
    return folder


def missing_base(tiff: Path, folder: Path) -> Path:
    """Only the reduced levels (and label, overview) are left."""
    convert(tiff, folder)
    (folder / "level-0.dcm").unlink()
    return folder


def with_foreign_file(tiff: Path, folder: Path, name: str = "scan.dcm") -> Path:
    """A good series plus a DICOM object that is no whole-slide image (a secondary capture)."""
    convert(tiff, folder)
    write_secondary_capture(folder / name)
    return folder


def write_secondary_capture(path: Path) -> Path:
    """A small valid DICOM Secondary Capture image (not a slide)."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.ConversionType = "OT", "WSD"
    ds.PatientName, ds.PatientID = PATIENT, "SYNTH-0001"
    ds.Rows, ds.Columns = 8, 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(64)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_greyscale(folder: Path) -> Path:
    """Relabel level 0's header as single-sample greyscale (what a fluorescence scan holds)."""
    path = folder / "level-0.dcm"
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation, ds.SamplesPerPixel = "MONOCHROME2", 1
    ds.save_as(path, enforce_file_format=True)
    return path
