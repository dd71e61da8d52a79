"""Write a small DICOM VL Whole Slide Microscopy Image series (for tests and benchmarks).

One instance per pyramid level (TILED_FULL, 8-bit RGB), optionally a label and an overview
instance, all in one series in one folder, as scanners and converters lay them out. Frames are
stored uncompressed (Explicit VR Little Endian: exact), as JPEG 2000 lossless (exact) or as
baseline JPEG (lossy, YCbCr 4:2:0). The full-resolution level can be split into a
concatenation of several instances, to test a series with a missing part.

Built on pydicom and imagecodecs only; nothing here is used to read slides.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import imagecodecs
import numpy as np
import numpy.typing as npt
import tifffile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    VLWholeSlideMicroscopyImageStorage,
    generate_uid,
)

Compression = Literal["none", "jpeg", "jpeg2k"]
TRANSFER_SYNTAX: dict[str, UID] = {
    "none": ExplicitVRLittleEndian,
    "jpeg": JPEGBaseline8Bit,
    "jpeg2k": JPEG2000Lossless,
}


@dataclass(frozen=True)
class SeriesUids:
    study: str
    series: str
    frame_of_reference: str

    @classmethod
    def new(cls) -> SeriesUids:
        return cls(generate_uid(), generate_uid(), generate_uid())


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _frames(image: npt.NDArray[np.uint8], tile: int) -> list[npt.NDArray[np.uint8]]:
    """TILED_FULL frame order: row by row, left to right; edge frames padded with white."""
    h, w = image.shape[:2]
    out = []
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            frame = np.full((tile, tile, 3), 255, np.uint8)
            part = image[y : y + tile, x : x + tile]
            frame[: part.shape[0], : part.shape[1]] = part
            out.append(frame)
    return out


def _encode(frame: npt.NDArray[np.uint8], compression: Compression, quality: int) -> bytes:
    if compression == "jpeg":
        return bytes(imagecodecs.jpeg8_encode(frame, level=quality, subsampling="420"))
    if compression == "jpeg2k":
        return bytes(
            imagecodecs.jpeg2k_encode(frame, level=0, codecformat="J2K", reversible=True, mct=False)
        )
    return frame.tobytes()


def _base(
    uids: SeriesUids, image_type: Sequence[str], compression: Compression, number: int
) -> Dataset:
    """The attributes every instance of the series shares, plus its image type."""
    now = _dt.datetime(2024, 1, 2, 3, 4, 5)
    ds = Dataset()
    ds.SOPClassUID = VLWholeSlideMicroscopyImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids.study, uids.series
    ds.FrameOfReferenceUID = uids.frame_of_reference
    ds.Modality = "SM"
    ds.ImageType = list(image_type)
    ds.InstanceNumber = number
    ds.SeriesNumber, ds.StudyID, ds.AccessionNumber = 1, "1", ""
    ds.PatientName, ds.PatientID = "Synthetic^Patient", "SYNTH-0001"
    ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "", "", ""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.Manufacturer, ds.ManufacturerModelName = "cytoscreen", "synthetic slide"
    ds.DeviceSerialNumber, ds.SoftwareVersions = "0", "0"
    ds.PositionReferenceIndicator = "SLIDE_CORNER"
    ds.VolumetricProperties = "VOLUME"
    ds.ContainerIdentifier = "synthetic-slide"
    ds.IssuerOfTheContainerIdentifierSequence = []
    ds.ContainerTypeCodeSequence = [_code("433466003", "SCT", "Microscope slide")]
    specimen = Dataset()
    specimen.SpecimenIdentifier = "synthetic-specimen"
    specimen.SpecimenUID = generate_uid(entropy_srcs=[uids.series, "specimen"])
    specimen.IssuerOfTheSpecimenIdentifierSequence = []
    specimen.SpecimenPreparationSequence = []
    ds.SpecimenDescriptionSequence = [specimen]
    path = Dataset()
    path.OpticalPathIdentifier = "1"
    path.IlluminationTypeCodeSequence = [_code("111744", "DCM", "Brightfield illumination")]
    path.IlluminationColorCodeSequence = [_code("414298005", "SCT", "Full Spectrum")]
    path.ObjectiveLensPower = 40
    ds.OpticalPathSequence = [path]
    ds.NumberOfOpticalPaths = 1
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422" if compression == "jpeg" else "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression = "01" if compression == "jpeg" else "00"
    if compression == "jpeg":
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.BurnedInAnnotation = "YES" if "LABEL" in image_type else "NO"
    ds.SpecimenLabelInImage = "YES" if "LABEL" in image_type else "NO"
    ds.FocusMethod, ds.ExtendedDepthOfField = "AUTO", "NO"
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem, origin.YOffsetInSlideCoordinateSystem = 20.0, 40.0
    ds.TotalPixelMatrixOriginSequence = [origin]
    return ds


def _instance(
    folder: Path,
    name: str,
    ds: Dataset,
    image: npt.NDArray[np.uint8],
    *,
    tile: int,
    mpp: float | None,
    compression: Compression,
    quality: int,
    parts: int = 1,
) -> list[Path]:
    """Write ``image`` as one instance (or a concatenation of ``parts`` instances)."""
    h, w = image.shape[:2]
    tile_w, tile_h = (tile, tile) if tile > 0 else (w, h)
    frames = _frames(image, tile) if tile > 0 else [np.ascontiguousarray(image)]
    encoded = [_encode(f, compression, quality) for f in frames]
    ds.Rows, ds.Columns = tile_h, tile_w
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = h, w
    ds.DimensionOrganizationType = "TILED_FULL"
    organisation = Dataset()
    organisation.DimensionOrganizationUID = generate_uid()
    ds.DimensionOrganizationSequence = [organisation]
    shared = Dataset()
    if mpp is not None:
        ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = w * mpp / 1000, h * mpp / 1000
        ds.ImagedVolumeDepth = 0.001
        measures = Dataset()
        measures.PixelSpacing = [mpp / 1000, mpp / 1000]  # mm: between rows, between columns
        measures.SliceThickness = 0.001
        measures.SpacingBetweenSlices = 0.001
        shared.PixelMeasuresSequence = [measures]
    frame_type = Dataset()
    frame_type.FrameType = list(ds.ImageType)
    shared.WholeSlideMicroscopyImageFrameTypeSequence = [frame_type]
    path_id = Dataset()
    path_id.OpticalPathIdentifier = "1"
    shared.OpticalPathIdentificationSequence = [path_id]
    ds.SharedFunctionalGroupsSequence = [shared]
    if compression == "jpeg":
        raw = h * w * 3
        ds.LossyImageCompressionRatio = f"{raw / max(1, sum(map(len, encoded))):.2f}"[:16]

    per_part = math.ceil(len(encoded) / parts)
    source_uid = ds.SOPInstanceUID
    concatenation_uid = generate_uid()
    written = []
    for index in range(parts):
        chunk = encoded[index * per_part : (index + 1) * per_part]
        part = ds if index == parts - 1 else _copy(ds)
        if parts > 1:
            part.SOPInstanceUID = generate_uid()
            part.ConcatenationUID = concatenation_uid
            part.SOPInstanceUIDOfConcatenationSource = source_uid
            part.InConcatenationNumber = index + 1
            part.InConcatenationTotalNumber = parts
            part.ConcatenationFrameOffsetNumber = index * per_part
        part.NumberOfFrames = len(chunk)
        if compression == "none":
            part.PixelData = b"".join(chunk)
        else:
            part.PixelData = encapsulate(chunk, has_bot=True)
        part["PixelData"].VR = "OB"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = part.SOPClassUID
        meta.MediaStorageSOPInstanceUID = part.SOPInstanceUID
        meta.TransferSyntaxUID = TRANSFER_SYNTAX[compression]
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        part.file_meta = meta
        suffix = f"-{index + 1}" if parts > 1 else ""
        out = folder / f"{name}{suffix}.dcm"
        part.save_as(out, enforce_file_format=True)
        written.append(out)
    return written


def _copy(ds: Dataset) -> Dataset:
    from copy import deepcopy

    return deepcopy(ds)


def write_dicom_wsi(
    folder: str | Path,
    levels: Sequence[npt.NDArray[np.uint8]],
    *,
    mpp: float | None,
    tile: int = 256,
    compression: Compression = "none",
    quality: int = 90,
    label: npt.NDArray[np.uint8] | None = None,
    overview: npt.NDArray[np.uint8] | None = None,
    base_parts: int = 1,
    uids: SeriesUids | None = None,
    prefix: str = "",
) -> list[Path]:
    """Write ``levels`` (level 0 first, RGB uint8) as one DICOM WSI series into ``folder``.

    ``mpp`` is level 0's resolution (micrometres per pixel; None writes no pixel spacing);
    each level's spacing is scaled by its size ratio to level 0. ``base_parts`` > 1 writes
    level 0 as a concatenation of that many instances. Files are named ``<prefix>level-<i>.dcm``
    (``-<part>`` added for a concatenation), ``<prefix>label.dcm``, ``<prefix>overview.dcm``.
    Returns the files written.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ids = uids or SeriesUids.new()
    w0 = levels[0].shape[1]
    written: list[Path] = []
    for index, image in enumerate(levels):
        resampled = index > 0
        image_type = (
            ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
            if resampled
            else ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        )
        level_mpp = None if mpp is None else mpp * w0 / image.shape[1]
        ds = _base(ids, image_type, compression, index + 1)
        written += _instance(
            out,
            f"{prefix}level-{index}",
            ds,
            image,
            tile=tile,
            mpp=level_mpp,
            compression=compression,
            quality=quality,
            parts=base_parts if index == 0 else 1,
        )
    for name, extra, flavour in (("label", label, "LABEL"), ("overview", overview, "OVERVIEW")):
        if extra is None:
            continue
        ds = _base(ids, ["ORIGINAL", "PRIMARY", flavour, "NONE"], compression, len(written) + 1)
        written += _instance(
            out,
            prefix + name,
            ds,
            extra,
            tile=0,
            mpp=None,
            compression=compression,
            quality=quality,
        )
    return written


def tiff_levels(path: str | Path) -> tuple[list[npt.NDArray[np.uint8]], float | None]:
    """The pyramid levels of a (small) pyramidal TIFF written by ``tiffwriter``, and its
    level-0 mpp from the resolution tags (None when it records none)."""
    with tifffile.TiffFile(path) as tf:
        pages = [p for p in tf.pages if isinstance(p, tifffile.TiffPage)]
        levels = [np.asarray(p.asarray(), dtype=np.uint8)[..., :3] for p in pages]
        first = pages[0]
        unit = first.tags.get("ResolutionUnit")
        xres = first.tags.get("XResolution")
        mpp = None
        if unit is not None and xres is not None and int(unit.value) == 3:  # centimetre
            num, den = xres.value
            mpp = 1e4 * den / num if num else None
    return levels, mpp


def tiff_to_dicom(tiff: str | Path, folder: str | Path, **kwargs: object) -> list[Path]:
    """Convert a small pyramidal TIFF to a DICOM WSI series (every TIFF page is a level)."""
    levels, mpp = tiff_levels(tiff)
    given = kwargs.pop("mpp", mpp)
    return write_dicom_wsi(folder, levels, mpp=given, **kwargs)  # type: ignore[arg-type]
