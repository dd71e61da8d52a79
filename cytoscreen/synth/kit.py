"""The cell kit: real CRIC fields, cut into the pieces that slides are composed from.

``load_cell_kit()`` prefers the full development set (the folder in ``$CYTOSCREEN_CRIC_DIR``, or
``../shared/data/cric`` beside the current directory, i.e. a source checkout run from its root)
and falls back to the small attributed kit bundled in ``cytoscreen/data/cric_kit`` (package
data). Either way the crops are pasted back into their fields
(``fields.paste_field``) and cut into negative pieces (no abnormal nucleus in view) and one
abnormal unit per abnormal cell (``fields``). ``CellKit.subset`` keeps the fields of one split.

Besides real pieces the kit holds a small bank of procedural sprites, drawn after the pieces in
the same index space: red blood cells and debris specks (``blood_sprite``, ``debris_sprite``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from cytoscreen.synth.cric import (
    ABNORMAL_CLASSES,
    ASSUMED_MPP,
    BETHESDA_ORDER,
    CRIC_COLUMNS,
    CricCrop,
    read_cric,
    severity,
)
from cytoscreen.synth.fields import (
    Field,
    Piece,
    abnormal_units,
    load_fields,
    negative_pieces,
    piece_layer,
)

__all__ = [
    "ABNORMAL_CLASSES",
    "ASSUMED_MPP",
    "BETHESDA_ORDER",
    "BUNDLED_KIT",
    "CRIC_COLUMNS",
    "CellKit",
    "bundled_kit",
    "find_full_set",
    "load_cell_kit",
    "severity",
]

BUNDLED_KIT = Path(str(resources.files("cytoscreen") / "data" / "cric_kit"))
ENV_VAR = "CYTOSCREEN_CRIC_DIR"
N_BLOOD = 12  # procedural red blood cells in the bank
N_DEBRIS = 12  # procedural debris specks in the bank
# Pap-stained red blood cells look orange-red: optical density per channel (R, G, B)
BLOOD_OD = np.array([0.05, 0.32, 0.24], np.float32)
DEBRIS_OD = np.array([0.45, 0.50, 0.42], np.float32)  # dark brownish specks
LAYER_CACHE_MB = 256.0  # piece layers kept in memory (float16)

F32 = npt.NDArray[np.float32]


def _disc(size: int, radius: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a = radius * rng.uniform(0.9, 1.1)
    b = radius * rng.uniform(0.85, 1.05)
    th = rng.uniform(0, np.pi)
    u = ((xx - c) * np.cos(th) + (yy - c) * np.sin(th)) / a
    v = (-(xx - c) * np.sin(th) + (yy - c) * np.cos(th)) / b
    return u, v


def blood_sprite(seed: int, mpp: float = ASSUMED_MPP) -> F32:
    """A red blood cell (7-8 um disc, paler centre) as premultiplied OD at ``mpp``."""
    rng = np.random.default_rng(seed)
    radius = 3.75 / mpp
    size = int(np.ceil(2 * radius * 1.3)) | 1
    u, v = _disc(size, radius, rng)
    r2 = u * u + v * v
    inside = np.clip((1.0 - np.sqrt(r2)) * radius / 1.5, 0.0, 1.0)  # soft 1.5-px edge
    profile = 0.55 + 0.45 * np.clip(r2, 0.0, 1.0)  # biconcave: the centre transmits more
    od = inside * profile * rng.uniform(0.7, 1.2)
    return (od[..., None] * BLOOD_OD).astype(np.float32)


def debris_sprite(seed: int, mpp: float = ASSUMED_MPP) -> F32:
    """An irregular dark speck 2-8 um across (debris, pigment) as premultiplied OD."""
    rng = np.random.default_rng(seed + 10_000)
    radius = rng.uniform(1.0, 4.0) / mpp
    size = int(np.ceil(2 * radius * 1.6)) | 1
    u, v = _disc(size, radius, rng)
    noise = ndi.gaussian_filter(rng.normal(0, 1, (size, size)), max(1.0, radius / 3))
    noise /= float(np.abs(noise).max()) + 1e-6
    shape = np.clip((1.0 - np.sqrt(u * u + v * v) + 0.35 * noise) * 3.0, 0.0, 1.0)
    od = ndi.gaussian_filter(shape, 0.8) * rng.uniform(0.4, 1.0)
    return (od[..., None] * DEBRIS_OD).astype(np.float32)


@dataclass(eq=False)
class CellKit:
    """Real fields cut into pieces, plus procedural blood and debris sprites.

    Sprite index ``i``: ``i < n_pieces`` is ``pieces[i]`` (negative pieces first, then abnormal
    units); then ``N_BLOOD`` blood cells; then ``N_DEBRIS`` debris specks.
    """

    fields: Mapping[int, Field]
    negative: tuple[Piece, ...]
    units: tuple[Piece, ...]
    source: str
    mpp: float = ASSUMED_MPP
    _layers: OrderedDict[int, np.ndarray] = field(default_factory=OrderedDict, repr=False)
    _bank: list[F32] = field(default_factory=list, repr=False)
    _layer_bytes: int = field(default=0, repr=False)

    @classmethod
    def from_fields(cls, fields: Mapping[int, Field], source: str) -> CellKit:
        neg = tuple(p for f in fields.values() for p in negative_pieces(f))
        units = tuple(p for f in fields.values() for p in abnormal_units(f))
        return cls(fields=dict(fields), negative=neg, units=units, source=source)

    # -- index space -------------------------------------------------------------------------
    @property
    def pieces(self) -> tuple[Piece, ...]:
        return self.negative + self.units

    @property
    def n_pieces(self) -> int:
        return len(self.negative) + len(self.units)

    @property
    def blood_ids(self) -> npt.NDArray[np.int64]:
        return np.arange(self.n_pieces, self.n_pieces + N_BLOOD, dtype=np.int64)

    @property
    def debris_ids(self) -> npt.NDArray[np.int64]:
        start = self.n_pieces + N_BLOOD
        return np.arange(start, start + N_DEBRIS, dtype=np.int64)

    def __len__(self) -> int:
        """Labelled cells in the kit (each shown by at least one piece)."""
        return len({(p.image_id, c) for p in self.pieces for c in p.cells})

    def layer(self, index: int) -> F32:
        """Premultiplied optical density of sprite ``index`` at the kit's resolution."""
        if index >= self.n_pieces:
            if not self._bank:
                self._bank.extend(blood_sprite(k, self.mpp) for k in range(N_BLOOD))
                self._bank.extend(debris_sprite(k, self.mpp) for k in range(N_DEBRIS))
            return self._bank[index - self.n_pieces]
        hit = self._layers.get(index)
        if hit is None:
            p = self.pieces[index]
            hit = piece_layer(self.fields[p.image_id], p).astype(np.float16)
            self._layers[index] = hit
            self._layer_bytes += hit.nbytes
            while self._layer_bytes > LAYER_CACHE_MB * 2**20 and len(self._layers) > 1:
                self._layer_bytes -= self._layers.popitem(last=False)[1].nbytes
        else:
            self._layers.move_to_end(index)
        return hit.astype(np.float32)

    def sprite_size(self, index: int) -> tuple[int, int]:
        """(width, height) of sprite ``index`` in kit pixels."""
        if index < self.n_pieces:
            return self.pieces[index].size
        h, w = self.layer(index).shape[:2]
        return w, h

    # -- content -----------------------------------------------------------------------------
    def crop(self, piece: Piece, cell: int) -> CricCrop:
        return self.fields[piece.image_id].crops[cell]

    def worst(self, piece: Piece) -> str:
        """The most severe labelled class a piece shows."""
        return max((self.crop(piece, c).bethesda for c in piece.cells), key=severity)

    def classes(self) -> tuple[str, ...]:
        """Bethesda classes shown by some piece, in severity order."""
        present = {self.crop(p, c).bethesda for p in self.pieces for c in p.cells}
        return tuple(c for c in BETHESDA_ORDER if c in present)

    def subset(self, image_ids: Iterable[int], *, source: str | None = None) -> CellKit:
        """The kit restricted to the given fields (a split)."""
        keep = {int(i) for i in image_ids}
        fields = {k: f for k, f in self.fields.items() if k in keep}
        return CellKit(
            fields=fields,
            negative=tuple(p for p in self.negative if p.image_id in keep),
            units=tuple(p for p in self.units if p.image_id in keep),
            source=source or f"{self.source} (fields {len(fields)} of {len(self.fields)})",
            mpp=self.mpp,
        )


def read_cell_kit(root: str | Path) -> CellKit:
    """The kit of every crop listed in ``<root>/manifest.csv`` (CRIC layout)."""
    root = Path(root)
    crops = read_cric(root / "manifest.csv")
    return CellKit.from_fields(load_fields(crops), source=str(root))


def find_full_set() -> Path | None:
    """The full CRIC development set, if this machine has it: the folder in
    ``$CYTOSCREEN_CRIC_DIR``, else ``../shared/data/cric`` beside the current directory."""
    candidates = []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    candidates.append(Path.cwd().parent / "shared" / "data" / "cric")
    for c in candidates:
        if (c / "manifest.csv").is_file():
            return c
    return None


_KITS: dict[str, CellKit] = {}


def load_cell_kit(root: str | Path | None = None) -> CellKit:
    """Cells from ``root``; by default the full set when present, else the bundled kit.
    Loaded once per process and folder."""
    if root is None:
        full = find_full_set()
        root = full if full is not None else BUNDLED_KIT
    key = str(Path(root).resolve())
    if key not in _KITS:
        _KITS[key] = read_cell_kit(root)
    return _KITS[key]


def bundled_kit() -> CellKit:
    """The small kit shipped with the package (stable: use it in tests)."""
    return load_cell_kit(BUNDLED_KIT)
