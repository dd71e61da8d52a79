"""The obscured share: clear cells read low, cells under blood or thick overlap read high, blood
on bare glass and orange cytoplasm are not taken for obscured cells."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from cytoscreen.tiling import foreground as fgm
from cytoscreen.tiling.obscured import ObscuredEstimate, estimate_obscured

MPP = 8.0  # the mask grid: every pixel is the mean colour of 8 x 8 um
GLASS = np.array([241.0, 240.0, 243.0], np.float32)
# optical densities (r, g, b) of Pap-stained material, as CRIC cells measure on generated slides
CYANOPHILIC = (0.16, 0.20, 0.18)  # blue-green cytoplasm: red about 0.8 of green
ORANGEOPHILIC = (0.08, 0.20, 0.26)  # orange-G cytoplasm: blue absorbed most
NUCLEUS = (0.55, 0.60, 0.45)
ERYTHROCYTES = (0.05, 0.32, 0.24)  # a layer of orange-red blood cells: red hardly absorbed
THICK = (0.95, 1.05, 0.90)  # piled-up cells: under 12% of the light in every channel

F32 = npt.NDArray[np.float32]


def _field(seed: int = 0, n_cells: int = 40, size: int = 96) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Optical densities of a field of cells (6-10 px, 48-80 um, across) on glass, and where
    the cells are; a third are orangeophilic, each has a nucleus pixel."""
    rng = np.random.default_rng(seed)
    od = np.zeros((size, size, 3), np.float32)
    cells = np.zeros((size, size), bool)
    for k in range(n_cells):
        y, x = rng.integers(0, size - 10, 2)
        h, w = rng.integers(6, 11, 2)
        od[y : y + h, x : x + w] = ORANGEOPHILIC if k % 3 == 0 else CYANOPHILIC
        od[y + h // 2, x + w // 2] = NUCLEUS
        cells[y : y + h, x : x + w] = True
    return od, cells


def _rgb(od: F32) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(1)
    img = GLASS * 10.0 ** (-od) + rng.normal(0.0, 1.0, od.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _estimate(od: F32, cells: npt.NDArray[np.bool_]) -> ObscuredEstimate:
    """The estimate on a mask of the cells grown by two pixels (as the foreground's dilation)."""
    mask = fgm.dilate_disk(cells, 2.0)
    return fgm.obscured_estimate(_rgb(od), mask, MPP)


def _cover(
    od: F32, where: npt.NDArray[np.bool_], share: float, layer: tuple[float, ...], seed: int = 2
) -> F32:
    """``od`` with ``layer`` added on a random ``share`` of the pixels ``where``."""
    rng = np.random.default_rng(seed)
    out = od.copy()
    hit = where & (rng.random(where.shape) < share)
    out[hit] += np.asarray(layer, np.float32) * rng.uniform(0.8, 1.2, (int(hit.sum()), 1))
    return out.astype(np.float32)


def test_clear_cells_are_barely_obscured() -> None:
    od, cells = _field()
    e = _estimate(od, cells)
    assert e.share is not None and e.share < 0.05
    assert e.cell_pixels == pytest.approx(cells.sum(), rel=0.05)


@pytest.mark.parametrize("coverage", [0.2, 0.5, 0.9])
def test_blood_over_cells_reads_as_its_coverage(coverage: float) -> None:
    od, cells = _field()
    e = _estimate(_cover(od, cells, coverage, ERYTHROCYTES), cells)
    assert e.share is not None and e.share == pytest.approx(coverage, abs=0.1)
    assert e.blood > 5 * e.thick


def test_a_field_mostly_under_blood_is_over_the_bethesda_limit() -> None:
    od, cells = _field(seed=3)
    glass_and_cells = np.ones(cells.shape, bool)
    e = _estimate(_cover(od, glass_and_cells, 0.9, ERYTHROCYTES, seed=4), cells)
    assert e.share is not None and e.share > 0.75


def test_blood_on_bare_glass_obscures_no_cell() -> None:
    od, cells = _field(seed=5)
    e = _estimate(_cover(od, ~cells, 0.7, ERYTHROCYTES), cells)  # some glass stays bare
    assert e.share is not None and e.share < 0.05
    # much of the blood lies inside the mask (its margin), yet it is not cell-bearing area
    assert e.cell_pixels == pytest.approx(cells.sum(), rel=0.05)


def test_dense_dark_overlap_reads_as_thick() -> None:
    od, cells = _field(seed=6)
    e = _estimate(_cover(od, cells, 0.85, THICK), cells)
    assert e.share is not None and e.share > 0.75 and e.thick > 0.75


def test_dense_orange_cytoplasm_is_not_blood() -> None:
    od, cells = _field(seed=7)
    e = _estimate(_cover(od, cells, 1.0, ORANGEOPHILIC), cells)  # two layers of orange
    od[cells] = np.asarray(ORANGEOPHILIC, np.float32) * 2.5
    dense = _estimate(od, cells)
    assert e.share is not None and e.share < 0.05
    assert dense.share is not None and dense.share < 0.05


def test_no_cell_area_gives_an_unknown_share() -> None:
    od = np.zeros((40, 40, 3), np.float32)
    e = fgm.obscured_estimate(_rgb(od), np.ones((40, 40), bool), MPP)
    assert e.share is None and e.cell_pixels == 0
    assert estimate_obscured([od[..., 0]] * 3, np.zeros((40, 40), bool), MPP).share is None


def test_estimate_round_trips_and_absent_is_unknown() -> None:
    od, cells = _field()
    e = _estimate(_cover(od, cells, 0.5, ERYTHROCYTES), cells)
    assert ObscuredEstimate.from_dict(e.to_dict()) == e
    assert e.share == pytest.approx(e.blood + e.thick)
    assert e.cell_mm2 == pytest.approx(e.cell_pixels * 64e-6)
    assert ObscuredEstimate.from_dict(None) is None  # a patch store made before the estimate
    assert ObscuredEstimate.from_dict({"share": 0.5}) is None


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="shape"):
        estimate_obscured([np.zeros((4, 4), np.float32)] * 3, np.zeros((4, 5), bool), MPP)
