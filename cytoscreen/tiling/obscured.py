"""How much of a slide's cell-bearing area is obscured: under blood or too thick to see through.

Bethesda calls a specimen unsatisfactory when more than 75% of its squamous cells are obscured
(blood, inflammation, thick areas). This estimate is made on the foreground mask's own grid
(``foreground.thumbnail_mpp``, 8 um/px): the mean colour of each mask pixel, as optical
densities (r, g, b) against the slide's glass. Pure numpy: arrays in, numbers out.

- **Cell material**: a mask pixel absorbs red beyond what blood alone would
  (``r - BLOOD_RED * g >= CELL_MIN_RED_OD``). Nuclei (haematoxylin) and cyanophilic cytoplasm
  absorb red strongly, eosinophilic and orangeophilic cytoplasm less; an erythrocyte hardly
  at all. Blood on bare glass is therefore not part of the cell-bearing area, and blood does
  not make a slide look obscured where no cell lies under it.
- **Blood**: Pap-stained erythrocytes are orange-red to pink: they absorb green most, blue
  nearly as much (haemoglobin, eosin, orange G) and red little (about ``BLOOD_RED`` of green).
  A pixel's colour is read as blood over cell material whose red absorption is at least
  ``CELL_RED`` of its green; the green density that blood adds is then
  ``(CELL_RED * g - r) / (CELL_RED - BLOOD_RED)``. A pixel is *under blood* when that reaches
  ``BLOOD_MIN_OD`` and green is (about) the most absorbed channel (``b <= BLOOD_MAX_BLUE * g``:
  orange-G keratinised cytoplasm absorbs blue most).
- **Thick**: the least absorbed channel of the pixel's mean reaches ``THICK_OD`` (under 16% of
  the light passes in every channel): overlapping cells, a thick cluster, a dense carpet of
  inflammatory cells; a nucleus beneath it (darkest-channel density about 0.5 on its own, see
  ``tiling.nuclei``) no longer stands out.

The share is (cell pixels under blood or thick) / (cell pixels). Inflammation is only counted
where it makes an area thick: neutrophils scattered over cells are not estimated. See
docs/cellularity.md for what it was measured on and what it does not handle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]

BLOOD_RED = 0.15  # red / green optical density of a Pap-stained erythrocyte
CELL_RED = 0.6  # red / green assumed for the cell material under blood (least red plausible)
BLOOD_MIN_OD = 0.06  # green density added by blood for a mask pixel to count as under blood
BLOOD_MAX_BLUE = 1.05  # blue / green of blood at most (orange cytoplasm absorbs blue most)
CELL_MIN_RED_OD = 0.03  # red density beyond blood's that marks cell material
THICK_OD = 0.8  # least absorbed channel at this density: too thick to see a nucleus through


@dataclass(frozen=True)
class ObscuredEstimate:
    """Share of the cell-bearing area that is obscured, and its parts (each a share of the
    same area; ``blood`` excludes thick pixels, so ``share == blood + thick``). ``share`` is
    None when the slide has no cell-bearing pixel."""

    share: float | None
    blood: float
    thick: float
    cell_pixels: int  # mask pixels holding cell material
    mpp: float  # of those pixels

    @property
    def cell_mm2(self) -> float:
        return self.cell_pixels * (self.mpp / 1000.0) ** 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> ObscuredEstimate | None:
        """The estimate stored by ``to_dict``; None when ``data`` is not one (absent: a patch
        store made before the estimate existed)."""
        if not isinstance(data, Mapping):
            return None
        try:
            share = data["share"]
            return cls(
                share=None if share is None else float(share),
                blood=float(data["blood"]),
                thick=float(data["thick"]),
                cell_pixels=int(data["cell_pixels"]),
                mpp=float(data["mpp"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def estimate_obscured(densities: Sequence[F32], mask: BoolArray, mpp: float) -> ObscuredEstimate:
    """The obscured share of the cell-bearing pixels of ``mask``.

    ``densities``: the (r, g, b) optical densities of each mask pixel's mean colour against the
    slide's glass (``foreground.channel_densities``), each ``(h, w)`` like ``mask``; ``mpp``:
    micrometres per pixel (recorded, for the area).
    """
    r, g, b = (np.asarray(d, np.float32) for d in densities)
    inside = np.asarray(mask, np.bool_)
    if r.shape != inside.shape or g.shape != inside.shape or b.shape != inside.shape:
        raise ValueError(f"densities {r.shape} and mask {inside.shape} differ in shape")
    thick = np.minimum(np.minimum(r, g), b) >= THICK_OD
    cell = inside & ((r - np.float32(BLOOD_RED) * g >= CELL_MIN_RED_OD) | thick)
    n_cell = int(np.count_nonzero(cell))
    if n_cell == 0:
        return ObscuredEstimate(None, 0.0, 0.0, 0, float(mpp))
    added = (np.float32(CELL_RED) * g - r) / np.float32(CELL_RED - BLOOD_RED)
    blood = (added >= BLOOD_MIN_OD) & (b <= np.float32(BLOOD_MAX_BLUE) * g)
    n_thick = int(np.count_nonzero(cell & thick))
    n_blood = int(np.count_nonzero(cell & blood & ~thick))
    return ObscuredEstimate(
        share=(n_blood + n_thick) / n_cell,
        blood=n_blood / n_cell,
        thick=n_thick / n_cell,
        cell_pixels=n_cell,
        mpp=float(mpp),
    )
