"""Finding slides in folders, and on-disk ids that are safe, stable and unique."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cytoscreen.errors import UnreadableSlide
from cytoscreen.io.dicom import DICOM_SUFFIX, slide_folder

# Extensions of one-file slides the readers (OpenSlide, tiffslide) open; compared
# case-insensitively. DICOM (.dcm) is not among them: a folder holding .dcm files is one slide.
SLIDE_EXTENSIONS = frozenset(
    {
        ".svs",
        ".tif",
        ".tiff",
        ".ndpi",
        ".vms",
        ".vmu",
        ".scn",
        ".mrxs",
        ".svslide",
        ".bif",
        ".qptiff",
        ".ome.tif",
        ".ome.tiff",
    }
)
# Files written beside slides by cytoscreen (ground truth, annotations): never slides.
SIDE_SUFFIXES = (".cells.json", ".geojson")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
STEM_MAX = 48


@dataclass(frozen=True)
class SlideInput:
    """A slide to screen: its absolute path, its path relative to the input folder it was found
    in (the file name when given directly) and the on-disk id derived from that. A DICOM slide's
    path is the folder that holds its series."""

    path: Path
    relative: str
    id: str


def is_slide_file(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith(".") or name.endswith(SIDE_SUFFIXES):
        return False
    return any(name.endswith(ext) for ext in SLIDE_EXTENSIONS)


def slide_id(relative: str, ident: str | None = None, *, folder: bool = False) -> str:
    """``<sanitised stem>-<8 hex of sha1(ident)>`` (ident defaults to ``relative``, the path
    relative to the input folder): safe on any file system, and distinct for slides with the
    same name in different folders or names differing only in case. A ``folder`` (a DICOM
    series) keeps its whole name as the stem: folders are often named by a dotted UID."""
    name = relative.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    stem = name.split(".", 1)[0] if not (name.startswith(".") or folder) else name
    safe = _UNSAFE.sub("_", stem).strip("._-")[:STEM_MAX] or "slide"
    digest = hashlib.sha1((ident or relative).encode("utf-8")).hexdigest()[:8]
    return f"{safe}-{digest}"


def _walk(root: Path) -> Iterable[Path]:
    """Slide files under ``root``, and each folder holding DICOM files (as the folder)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if any(f.lower().endswith(DICOM_SUFFIX) and not f.startswith(".") for f in files):
            yield Path(folder)
        for f in sorted(files):
            p = Path(folder) / f
            if is_slide_file(p):
                yield p
        # an .mrxs slide keeps its tiles in a same-named folder: nothing there is a slide
        dirs[:] = [d for d in dirs if not (Path(folder) / f"{d}.mrxs").exists()]


def find_slides(
    inputs: Iterable[str | Path], exclude: Iterable[str | Path] = ()
) -> list[SlideInput]:
    """Slides under each folder (recursively, sorted) and each file given directly.

    A folder holding ``.dcm`` files is one DICOM slide (its series; the files are not slides of
    their own), and so is a ``.dcm`` file given directly (its folder is the slide); whether the
    folder holds exactly one whole, whole-slide series is checked when the slide is opened, so
    a bad one fails alone and the batch carries on. Folders in ``exclude`` (e.g. the results
    folder, which holds a cache) are not searched. A slide's id hashes its path relative to the
    input folder, so ids survive moving the whole folder; where two inputs would still give the
    same id, the absolute path is hashed instead. Raises ``UnreadableSlide`` for an input that
    does not exist.
    """
    skip = [Path(e).resolve() for e in exclude]
    found: dict[Path, str] = {}
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise UnreadableSlide("no such file or folder", subject=p, hint="check the path")
        if p.is_dir():
            for f in _walk(p):
                r = f.resolve()
                if not any(r.is_relative_to(s) for s in skip):
                    rel = f.relative_to(p).as_posix()
                    found.setdefault(r, r.name if rel == "." else rel)
        elif p.name.lower().endswith(DICOM_SUFFIX):
            folder = slide_folder(p).resolve()
            found.setdefault(folder, folder.name)
        else:
            found.setdefault(p.resolve(), p.name)
    folders = {path for path in found if path.is_dir()}
    ids = [slide_id(rel, folder=path in folders) for path, rel in found.items()]
    seen = Counter(ids)
    out = []
    for (path, rel), sid in zip(found.items(), ids, strict=True):
        if seen[sid] > 1:
            sid = slide_id(rel, path.as_posix(), folder=path in folders)
        out.append(SlideInput(path, rel, sid))
    return out
