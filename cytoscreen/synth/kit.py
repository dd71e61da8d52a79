"""The cell kit: real CRIC Pap-smear crops used to compose synthetic slides.

``load_cell_kit()`` prefers the full development set (``../shared/data/cric``) when it is present
and falls back to the small attributed kit bundled in ``cytoscreen/data/cric_kit``. Crops flagged
``near_empty`` show only background: they are never used as cells, only (optionally) as
background texture.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from cytoscreen.errors import BadManifest

# Bethesda categories from least to most severe (index = severity rank).
BETHESDA_ORDER: tuple[str, ...] = ("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC")
ABNORMAL_CLASSES: tuple[str, ...] = BETHESDA_ORDER[1:]
MANIFEST_COLUMNS = ("path", "bethesda", "abnormal", "cric_cell_id", "width", "height", "near_empty")
ASSUMED_MPP = 0.25  # CRIC records no pixel size: 40x objective, 0.25 um/px is a working assumption

BUNDLED_KIT = Path(__file__).resolve().parent.parent / "data" / "cric_kit"
ENV_VAR = "CYTOSCREEN_CRIC_DIR"


def severity(bethesda: str) -> int:
    """Rank of a Bethesda category (NILM = 0 ... SCC = 5)."""
    return BETHESDA_ORDER.index(bethesda)


@dataclass(frozen=True, eq=False)
class CellKit:
    """Cell crops (never near-empty) plus background-only crops for texture."""

    images: npt.NDArray[np.uint8]  # (N, H, W, 3) RGB
    bethesda: tuple[str, ...]
    cell_ids: npt.NDArray[np.int64]  # (N,) cric_cell_id
    background: npt.NDArray[np.uint8]  # (M, H, W, 3) near-empty crops (texture only)
    source: str
    mpp: float = ASSUMED_MPP
    _footprints: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def abnormal(self) -> npt.NDArray[np.bool_]:
        return np.array([b != "NILM" for b in self.bethesda], dtype=bool)

    def indices_of(self, bethesda: str) -> npt.NDArray[np.int64]:
        return np.array([i for i, b in enumerate(self.bethesda) if b == bethesda], dtype=np.int64)

    def classes(self) -> tuple[str, ...]:
        """Bethesda classes present, in severity order."""
        present = set(self.bethesda)
        return tuple(c for c in BETHESDA_ORDER if c in present)

    def subset(self, cell_ids: set[int] | frozenset[int], *, source: str | None = None) -> CellKit:
        """The kit restricted to the given cric_cell_ids (background crops are kept)."""
        keep = np.array([int(c) in cell_ids for c in self.cell_ids], dtype=bool)
        return CellKit(
            images=self.images[keep],
            bethesda=tuple(b for b, k in zip(self.bethesda, keep, strict=True) if k),
            cell_ids=self.cell_ids[keep],
            background=self.background,
            source=source or f"{self.source} (subset of {int(keep.sum())})",
            mpp=self.mpp,
        )

    def footprints(self) -> npt.NDArray[np.float64]:
        """Area (crop px) where each cell's alpha exceeds 0.5; computed once per kit."""
        return self._alpha_stats()[0]

    def alpha_boxes(self) -> npt.NDArray[np.float64]:
        """(N, 8, 4) bbox (x0, y0, x1, y1, crop px) of alpha > 0.1 in each dihedral orientation
        (orientation ``o``: mirror left-right when ``o >= 4``, then rotate ``o % 4`` x 90 deg)."""
        return self._alpha_stats()[1]

    def _alpha_stats(self) -> list[np.ndarray]:
        from cytoscreen.synth.compose import cell_alpha

        if not self._footprints:
            n, size = len(self), self.images.shape[1]
            areas = np.zeros(n)
            boxes = np.zeros((n, 8, 4))
            for i, im in enumerate(self.images):
                alpha = cell_alpha(im)[1]
                areas[i] = float((alpha > 0.5).sum())
                for o in range(8):
                    m = np.rot90((alpha > 0.1)[:, ::-1] if o >= 4 else alpha > 0.1, o % 4)
                    ys, xs = np.nonzero(m)
                    boxes[i, o] = (
                        (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                        if ys.size
                        else (size / 2, size / 2, size / 2, size / 2)
                    )
            self._footprints.extend([areas, boxes])
        return self._footprints


def _read_manifest(root: Path) -> list[dict[str, str]]:
    manifest = root / "manifest.csv"
    try:
        with manifest.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise BadManifest(f"cannot read the cell manifest: {exc}", slide=manifest) from exc
    missing = [c for c in MANIFEST_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise BadManifest(
            f"cell manifest is empty or lacks columns {missing}",
            slide=manifest,
            hint=f"a CRIC manifest needs the columns {', '.join(MANIFEST_COLUMNS)}",
        )
    return rows


def read_cell_kit(root: str | Path) -> CellKit:
    """Load every crop listed in ``<root>/manifest.csv`` (CRIC layout)."""
    root = Path(root)
    rows = _read_manifest(root)
    cells: list[np.ndarray] = []
    classes: list[str] = []
    ids: list[int] = []
    background: list[np.ndarray] = []
    for n, row in enumerate(rows, start=2):
        if row["bethesda"] not in BETHESDA_ORDER:
            raise BadManifest(
                f"line {n}: unknown Bethesda class {row['bethesda']!r}",
                slide=root / "manifest.csv",
                hint=f"use one of {', '.join(BETHESDA_ORDER)}",
            )
        try:
            with Image.open(root / row["path"]) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except OSError as exc:
            raise BadManifest(f"line {n}: cannot read {row['path']}: {exc}", slide=root) from exc
        if row["near_empty"].strip() in ("1", "true", "True"):
            background.append(rgb)
            continue
        cells.append(rgb)
        classes.append(row["bethesda"])
        ids.append(int(row["cric_cell_id"]))
    if not cells:
        raise BadManifest("the manifest lists no usable (non near-empty) cells", slide=root)
    shape = cells[0].shape
    if any(c.shape != shape for c in cells + background):
        raise BadManifest(f"all crops must share one size ({shape})", slide=root)
    return CellKit(
        images=np.stack(cells),
        bethesda=tuple(classes),
        cell_ids=np.array(ids, dtype=np.int64),
        background=np.stack(background) if background else np.zeros((0, *shape), np.uint8),
        source=str(root),
    )


def find_full_set() -> Path | None:
    """The full CRIC development set, if this machine has it."""
    candidates = []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    candidates += [
        Path.cwd().parent / "shared" / "data" / "cric",
        BUNDLED_KIT.parents[2].parent / "shared" / "data" / "cric",
    ]
    for c in candidates:
        if (c / "manifest.csv").is_file():
            return c
    return None


def load_cell_kit(root: str | Path | None = None) -> CellKit:
    """Cells from ``root``; by default the full set when present, else the bundled kit."""
    if root is not None:
        return read_cell_kit(root)
    full = find_full_set()
    return read_cell_kit(full if full is not None else BUNDLED_KIT)


def bundled_kit() -> CellKit:
    """The small kit shipped with the package (stable: use it in tests)."""
    return read_cell_kit(BUNDLED_KIT)
