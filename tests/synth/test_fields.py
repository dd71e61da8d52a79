"""Crops pasted back into their fields, the pieces cut from them, and orientation maths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoscreen.synth import CellKit
from cytoscreen.synth.cric import CricCrop
from cytoscreen.synth.fields import (
    ABNORMAL_MARGIN,
    NEGATIVE_CLEARANCE,
    abnormal_units,
    negative_pieces,
    paste_field,
    piece_alpha,
    visible_abnormal,
    whole_pieces,
)
from cytoscreen.synth.layout import orient_points, oriented_size


def _crop(cid: int, cls: str, nx: int, ny: int, x0: int, y0: int, size: int = 40) -> CricCrop:
    return CricCrop(Path(f"{cid}.png"), cls, cid, 1, nx, ny, x0, y0, size, size)


def _field() -> tuple[list[CricCrop], list[np.ndarray]]:
    """A 3-window field: two NILM windows overlapping each other, and an abnormal window
    touching the second, its nucleus 20 px from that window's edge."""
    crops = [
        _crop(1, "NILM", 20, 20, 0, 0),
        _crop(2, "NILM", 50, 20, 30, 0),
        _crop(3, "HSIL", 90, 20, 70, 0),
    ]
    rng = np.random.default_rng(0)
    canvas = rng.integers(0, 200, (40, 110, 3), dtype=np.uint8)  # one "real field"
    pixels = [canvas[c.y0 : c.y0 + c.height, c.x0 : c.x0 + c.width].copy() for c in crops]
    return crops, pixels


def test_paste_field_puts_every_crop_back_at_its_position() -> None:
    crops, pixels = _field()
    fld = paste_field(crops, pixels)
    assert fld.origin == (0, 0) and fld.shape == (40, 110)
    for c, px in zip(crops, pixels, strict=True):
        np.testing.assert_array_equal(fld.rgb[c.y0 : c.y0 + 40, c.x0 : c.x0 + 40], px)
    assert fld.covered.all()  # the three windows tile 0-110
    with pytest.raises(ValueError):
        paste_field(crops, pixels[:2])


def test_negative_pieces_keep_off_every_abnormal_nucleus() -> None:
    crops, pixels = _field()
    fld = paste_field(crops, pixels)
    seen = visible_abnormal(fld)
    # crop 2's window ends at x=70; the HSIL nucleus at x=90 is 20 px away: within the margin
    assert ABNORMAL_MARGIN > 90 - 70
    assert seen == [frozenset(), frozenset({2}), frozenset({2})]
    neg = negative_pieces(fld, clearance=ABNORMAL_MARGIN)
    assert [p.windows for p in neg] == [(0,)]
    assert [p.cells for p in neg] == [(0,)] and neg[0].n_abnormal == 0
    units = abnormal_units(fld)
    assert len(units) == 1 and 2 in units[0].cells and units[0].n_abnormal == 1
    assert set(units[0].windows) == {0, 1, 2}  # its window and the windows that show it
    whole = whole_pieces(fld)
    assert len(whole) == 1 and set(whole[0].cells) == {0, 1, 2}


def test_negative_pieces_keep_the_clearance_from_abnormal_nuclei() -> None:
    """Unlabelled neighbours of an abnormal cell are often abnormal: a negative piece keeps
    ``NEGATIVE_CLEARANCE`` from every labelled abnormal nucleus, not just the window margin."""
    far = NEGATIVE_CLEARANCE + 60
    crops = [
        _crop(1, "NILM", 20, 20, 0, 0),  # its window ends 50 px before the HSIL nucleus
        _crop(2, "HSIL", 90, 20, 70, 0),
        _crop(3, "NILM", 90 + far, 20, 70 + far, 0),  # its window starts `far - 20` px away
    ]
    pixels = [np.full((40, 40, 3), 120 + 10 * i, np.uint8) for i in range(3)]
    fld = paste_field(crops, pixels)
    assert [p.cells for p in negative_pieces(fld, clearance=ABNORMAL_MARGIN)] == [(0,), (2,)]
    assert [p.cells for p in negative_pieces(fld)] == [(2,)]  # crop 1 is 50 px away: too near
    for p in negative_pieces(fld):
        for w in p.windows:
            x0, y0, x1, y1 = fld.window(w)
            nx, ny = fld.nucleus(1)
            gap = max(x0 - nx, nx - x1, y0 - ny, ny - y1)
            assert gap >= NEGATIVE_CLEARANCE


def test_piece_alpha_fades_to_zero_at_the_border() -> None:
    crops, pixels = _field()
    fld = paste_field(crops, pixels)
    piece = negative_pieces(fld, clearance=ABNORMAL_MARGIN)[0]
    alpha = piece_alpha(fld, piece)
    assert alpha.shape == (40, 40)
    assert alpha[20, 20] == pytest.approx(1.0) and alpha[0, 20] < 0.1 and alpha[20, 0] < 0.1


def test_bundled_kit_pieces_are_consistent(kit: CellKit) -> None:
    assert kit.negative and kit.units
    for p in kit.negative:
        assert p.n_abnormal == 0 and all(not kit.crop(p, c).abnormal for c in p.cells)
    for u in kit.units:
        assert u.n_abnormal >= 1
    shown = {(p.image_id, c) for p in kit.pieces for c in p.cells}
    abnormal = {
        (f.image_id, i) for f in kit.fields.values() for i, c in enumerate(f.crops) if c.abnormal
    }
    assert abnormal <= shown  # every abnormal cell is in some unit
    layer = kit.layer(0)
    w, h = kit.sprite_size(0)
    assert layer.shape == (h, w, 3) and layer.dtype == np.float32 and layer.min() >= 0
    blood = kit.layer(int(kit.blood_ids[0]))
    assert blood[..., 1].max() > blood[..., 0].max()  # red cells absorb green, not red


@pytest.mark.parametrize("orient", range(8))
def test_orient_points_follows_numpy_rot90(orient: int) -> None:
    h, w = 5, 7
    arr = np.zeros((h, w), int)
    arr[1, 5] = 1  # the pixel whose centre is (5.5, 1.5)
    out = np.rot90(arr[:, ::-1] if orient >= 4 else arr, orient % 4)
    ys, xs = np.nonzero(out)
    x, y = orient_points(np.array([5.5]), np.array([1.5]), w, h, orient)
    assert (x[0], y[0]) == (xs[0] + 0.5, ys[0] + 0.5)
    assert oriented_size(w, h, orient) == (out.shape[1], out.shape[0])
