"""The CRIC Cervix crops: manifest rows, their source fields, and the split by image.

Each crop is a 100 x 100 px window of a CRIC field (a conventional Pap smear photographed with
a 40x objective), centred on one labelled nucleus, with the window's position in its field
(``crop_x0``, ``crop_y0``) and the nucleus's (``nucleus_x``, ``nucleus_y``). Crops of one field
overlap and share pixels, so every split is made by ``image_id``, never by cell.

``read_cric`` validates a manifest (all row problems reported at once); ``split_images``
partitions the fields into train / val / test, stratified so that every split holds every
Bethesda class; ``ImageSplits`` is the committed record of that partition.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytoscreen.errors import BadManifest

BETHESDA_ORDER: tuple[str, ...] = ("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC")
ABNORMAL_CLASSES: tuple[str, ...] = BETHESDA_ORDER[1:]
CRIC_COLUMNS: tuple[str, ...] = (
    "path",
    "bethesda",
    "abnormal",
    "cric_cell_id",
    "image_id",
    "nucleus_x",
    "nucleus_y",
    "crop_x0",
    "crop_y0",
    "width",
    "height",
)
# CRIC records no pixel size: 40x objective, 0.25 um/px is the project's working assumption.
ASSUMED_MPP = 0.25
SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)


def severity(bethesda: str) -> int:
    """Rank of a Bethesda category (NILM = 0 ... SCC = 5)."""
    return BETHESDA_ORDER.index(bethesda)


@dataclass(frozen=True)
class CricCrop:
    """One manifest row: a crop centred on a labelled nucleus of field ``image_id``."""

    path: Path
    bethesda: str
    cell_id: int
    image_id: int
    nucleus_x: int  # the labelled nucleus in its field (px)
    nucleus_y: int
    x0: int  # the crop's top-left corner in its field (px)
    y0: int
    width: int
    height: int

    @property
    def abnormal(self) -> bool:
        return self.bethesda != "NILM"

    @property
    def label(self) -> int:
        """0 = NILM, 1 = ASC-US or worse."""
        return int(self.abnormal)

    @property
    def window(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the crop in its field, x1/y1 exclusive."""
        return self.x0, self.y0, self.x0 + self.width, self.y0 + self.height


def _int(row: Mapping[str, str], key: str) -> int:
    return int(float(row[key]))


def read_cric(manifest: str | Path, *, check_files: bool = True) -> list[CricCrop]:
    """Rows of a CRIC manifest (paths relative to its folder); every problem reported at once."""
    manifest = Path(manifest)
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CRIC_COLUMNS if c not in (reader.fieldnames or [])]
            rows = list(reader)
    except FileNotFoundError:
        raise BadManifest(
            "CRIC manifest not found",
            subject=manifest,
            hint="pass the manifest.csv of the CRIC crops (see shared/data/README.md)",
        ) from None
    except OSError as exc:
        raise BadManifest(f"cannot read the CRIC manifest: {exc}", subject=manifest) from None
    if missing:
        raise BadManifest(
            f"missing columns {missing}",
            subject=manifest,
            hint=f"a CRIC manifest needs the columns {', '.join(CRIC_COLUMNS)}",
        )
    root = manifest.parent
    crops: list[CricCrop] = []
    problems: list[str] = []
    for n, row in enumerate(rows, start=2):
        b = row["bethesda"].strip()
        if b not in BETHESDA_ORDER:
            problems.append(f"line {n}: unknown Bethesda class {b!r}")
            continue
        if row["abnormal"].strip() not in ("0", "1") or (row["abnormal"].strip() == "1") != (
            b != "NILM"
        ):
            problems.append(f"line {n}: abnormal={row['abnormal']!r} contradicts {b}")
            continue
        try:
            crop = CricCrop(
                path=root / row["path"],
                bethesda=b,
                cell_id=_int(row, "cric_cell_id"),
                image_id=_int(row, "image_id"),
                nucleus_x=_int(row, "nucleus_x"),
                nucleus_y=_int(row, "nucleus_y"),
                x0=_int(row, "crop_x0"),
                y0=_int(row, "crop_y0"),
                width=_int(row, "width"),
                height=_int(row, "height"),
            )
        except ValueError:
            problems.append(f"line {n}: a number column is not a number")
            continue
        if crop.width <= 0 or crop.height <= 0:
            problems.append(f"line {n}: empty crop ({crop.width} x {crop.height})")
        elif not (crop.x0 <= crop.nucleus_x < crop.x0 + crop.width) or not (
            crop.y0 <= crop.nucleus_y < crop.y0 + crop.height
        ):
            problems.append(f"line {n}: the nucleus lies outside its crop")
        elif check_files and not crop.path.is_file():
            problems.append(f"line {n}: no file {row['path']}")
        else:
            crops.append(crop)
    ids = Counter(c.cell_id for c in crops)
    dup = sorted(i for i, k in ids.items() if k > 1)
    if dup:
        problems.append(f"cric_cell_id {dup[0]} appears {ids[dup[0]]} times")
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise BadManifest("; ".join(problems[:10]) + more, subject=manifest)
    if not crops:
        raise BadManifest("the manifest lists no crops", subject=manifest)
    return crops


def by_image(crops: Iterable[CricCrop]) -> dict[int, list[CricCrop]]:
    """Crops grouped by their field, each group in manifest order."""
    out: dict[int, list[CricCrop]] = {}
    for c in crops:
        out.setdefault(c.image_id, []).append(c)
    return out


@dataclass(frozen=True)
class ImageSplits:
    """Which split each CRIC field (``image_id``) belongs to."""

    seed: int
    fractions: tuple[float, float, float]
    images: Mapping[str, frozenset[int]]  # split name -> image_ids

    def split_of(self, image_id: int) -> str | None:
        return next((s for s in SPLITS if int(image_id) in self.images[s]), None)

    def select(self, crops: Iterable[CricCrop], split: str) -> list[CricCrop]:
        """The crops whose field is in ``split``."""
        ids = self.images[split]
        return [c for c in crops if c.image_id in ids]

    def apply(
        self, crops: Sequence[CricCrop], *, source: str | Path = "CRIC manifest"
    ) -> dict[str, list[CricCrop]]:
        """Crops grouped by split; a field the split file does not know is an error."""
        out: dict[str, list[CricCrop]] = {s: [] for s in SPLITS}
        unknown = sorted({c.image_id for c in crops if self.split_of(c.image_id) is None})
        if unknown:
            raise BadManifest(
                f"{len(unknown)} fields are in no split (e.g. image_id {unknown[0]})",
                subject=source,
                hint="the manifest changed since the split file was written: write a new one "
                "with `cytoscreen make-splits`",
            )
        for c in crops:
            out[str(self.split_of(c.image_id))].append(c)
        return out

    def to_json(self, crops: Sequence[CricCrop] = ()) -> str:
        """JSON text: image ids per split and, when ``crops`` are given, counts per class."""
        doc: dict[str, object] = {
            "description": "CRIC development fields split by image_id (crops of one field "
            "overlap, so never by cell), stratified so every split holds every Bethesda class",
            "unit": "image_id",
            "seed": self.seed,
            "fractions": dict(zip(SPLITS, self.fractions, strict=True)),
            "splits": {s: sorted(self.images[s]) for s in SPLITS},
        }
        if crops:
            parts = self.apply(crops)
            doc["counts"] = {
                s: {
                    "images": len(self.images[s]),
                    "cells": dict(sorted(Counter(c.bethesda for c in parts[s]).items())),
                }
                for s in SPLITS
            }
        return json.dumps(doc, indent=1) + "\n"


def split_images(
    crops: Sequence[CricCrop],
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    *,
    every_class: bool = True,
) -> ImageSplits:
    """Partition the fields into train/val/test by ``image_id``, stratified by Bethesda class.

    scikit-learn's ``StratifiedGroupKFold`` (groups = fields, labels = each crop's class) cuts
    the fields into folds of equal size with class shares as even as grouping allows; folds are
    handed out in proportion to ``fractions`` (with the default 0.6/0.2/0.2: five folds, three
    for train). Seeds are tried from ``seed`` upwards until every split holds every class; the
    seed used is recorded. ``every_class=False`` (small kits) asks only for NILM and some
    abnormal class in every split.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if len(fractions) != 3 or min(fractions) <= 0:
        raise ValueError(f"fractions must be three positive numbers, got {fractions}")
    fr = np.asarray(fractions, float) / float(sum(fractions))
    n_folds = 5
    share = np.round(fr * n_folds).astype(int)
    if share.sum() != n_folds or share.min() < 1:
        raise ValueError(f"fractions {fractions} must be multiples of 1/{n_folds}")
    labels = np.array([severity(c.bethesda) for c in crops])
    groups = np.array([c.image_id for c in crops])
    classes = set(labels.tolist())

    def covered(present: set[int]) -> bool:
        if every_class:
            return present == classes
        return 0 in present and bool(present - {0})  # NILM and some abnormal class

    for attempt in range(seed, seed + 200):
        folds = list(
            StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=attempt).split(
                labels, labels, groups
            )
        )
        order = [[int(g) for g in np.unique(groups[test])] for _, test in folds]
        images: dict[str, set[int]] = {}
        start = 0
        for name, k in zip(SPLITS, share.tolist(), strict=True):
            images[name] = {g for fold in order[start : start + k] for g in fold}
            start += k
        ok = all(covered(set(labels[np.isin(groups, sorted(images[s]))].tolist())) for s in SPLITS)
        if ok:
            f = tuple(float(x) for x in fr)
            return ImageSplits(
                attempt, (f[0], f[1], f[2]), {s: frozenset(v) for s, v in images.items()}
            )
    need = "every class" if every_class else "NILM and an abnormal class"
    raise ValueError(f"no seed gave every split {need}: too few fields")


def load_image_splits(path: str | Path) -> ImageSplits:
    """Read a split file written by ``ImageSplits.to_json``; a field in two splits is an error."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("unit") != "image_id":
            raise BadManifest(
                "this split file splits by cell, not by image: it predates the corrected CRIC "
                "crops and is void",
                subject=path,
                hint="write a split by image with `cytoscreen make-splits`",
            )
        images = {s: frozenset(int(i) for i in doc["splits"][s]) for s in SPLITS}
        fr = doc["fractions"]
        fractions = (float(fr["train"]), float(fr["val"]), float(fr["test"]))
        seed = int(doc["seed"])
    except FileNotFoundError:
        raise BadManifest(
            "split file not found",
            subject=path,
            hint="pass --splits with the split file by CRIC image, or write one with "
            "`cytoscreen make-splits`",
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadManifest(f"unreadable split file: {exc!r}", subject=path) from None
    seen: Counter[int] = Counter(i for s in SPLITS for i in images[s])
    shared = sorted(i for i, k in seen.items() if k > 1)
    if shared:
        raise BadManifest(f"{len(shared)} fields are in two splits, e.g. {shared[0]}", subject=path)
    return ImageSplits(seed, fractions, images)
