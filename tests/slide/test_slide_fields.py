"""Suspicious fields: merging of touching patches, boxes, ranking, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from cytoscreen.slide import FieldSettings, find_fields

NAN = float("nan")


def grid(nx: int, ny: int, stride: int) -> np.ndarray:
    ys, xs = np.mgrid[0:ny, 0:nx]
    return np.stack([xs.ravel() * stride, ys.ravel() * stride], axis=1).astype(np.int64)


def test_adjacent_patches_merge_into_one_box() -> None:
    coords = grid(4, 4, 100)  # index = row * 4 + col
    prob = np.zeros(16)
    prob[[0, 1]] = [0.7, 0.9]  # side by side, top-left
    prob[15] = 0.6  # far corner, alone
    fields = find_fields(prob, coords, 100.0)
    assert [(f.rank, f.patch_indices) for f in fields] == [(1, (0, 1)), (2, (15,))]
    top, other = fields
    assert top.score == pytest.approx(0.9)
    assert (top.x0, top.y0, top.x1, top.y1) == (0, 0, 200, 100)
    assert (other.x0, other.y0, other.x1, other.y1) == (300, 300, 400, 400)


def test_diagonal_and_chained_patches_form_one_component() -> None:
    coords = grid(4, 4, 100)
    prob = np.zeros(16)
    prob[[0, 5, 10, 11]] = 0.8  # diagonal chain, then a right neighbour
    (field,) = find_fields(prob, coords, 100.0)
    assert field.patch_indices == (0, 5, 10, 11)
    assert (field.x0, field.y0, field.x1, field.y1) == (0, 0, 400, 300)


def test_gap_tolerance_and_overlap() -> None:
    coords = np.array([[0, 0], [101, 0], [300, 0], [350, 0]])  # 1 px gap; then 50 px overlap
    prob = np.array([0.9, 0.8, 0.7, 0.6])
    merged = find_fields(prob, coords, 100.0, FieldSettings(merge_gap_px=1.0))
    assert [f.patch_indices for f in merged] == [(0, 1), (2, 3)]
    strict = find_fields(prob, coords, 100.0, FieldSettings(merge_gap_px=0.0))
    assert [f.patch_indices for f in strict] == [(0,), (1,), (2, 3)]


def test_fractional_patch_size_rounds_box_outwards() -> None:
    (field,) = find_fields([0.9], [[10, 20]], 100.4)
    assert (field.x0, field.y0, field.x1, field.y1) == (10, 20, 111, 121)


def test_nan_and_low_patches_never_form_fields() -> None:
    coords = grid(3, 1, 100)
    assert find_fields([NAN, 0.49, NAN], coords, 100.0) == ()
    assert find_fields([], np.zeros((0, 2)), 100.0) == ()
    assert find_fields([0.2, 0.1, 0.0], coords, 100.0, FieldSettings(min_score=0.0))[0].score == 0.2


def test_nan_patch_does_not_bridge() -> None:
    fields = find_fields([0.9, NAN, 0.9], grid(3, 1, 100), 100.0)
    assert [f.patch_indices for f in fields] == [(0,), (2,)]


def test_rank_by_score_ties_by_index_and_top_n() -> None:
    coords = grid(9, 1, 200)  # 100 px patches 200 px apart: none touch
    prob = np.array([0.6, 0.9, 0.7, 0.9, 0.55, 0.8, 0.65, 0.75, 0.95])
    fields = find_fields(prob, coords, 100.0, FieldSettings(max_fields=4))
    assert [f.patch_indices[0] for f in fields] == [8, 1, 3, 5]
    assert [f.rank for f in fields] == [1, 2, 3, 4]
    assert len(find_fields(prob, coords, 100.0)) == 9


def test_deterministic_and_order_independent() -> None:
    rng = np.random.default_rng(3)
    coords = grid(30, 30, 100)
    prob = rng.random(900)
    prob[rng.integers(0, 900, 40)] = np.nan
    first = find_fields(prob, coords, 100.0)
    assert find_fields(prob.copy(), coords.copy(), 100.0) == first
    perm = rng.permutation(900)
    shuffled = find_fields(prob[perm], coords[perm], 100.0)
    boxes = {(f.x0, f.y0, f.x1, f.y1, f.score) for f in first}
    assert {(f.x0, f.y0, f.x1, f.y1, f.score) for f in shuffled} == boxes


def test_field_score_is_its_best_patch_and_boxes_cover_members() -> None:
    rng = np.random.default_rng(4)
    coords = grid(20, 20, 50)  # 100 px patches at stride 50: overlapping
    prob = rng.random(400) ** 4
    fields = find_fields(prob, coords, 100.0, FieldSettings(min_score=0.3, max_fields=1000))
    seen: set[int] = set()
    for f in fields:
        members = np.array(f.patch_indices)
        assert f.score == pytest.approx(prob[members].max())
        assert (coords[members] >= [f.x0, f.y0]).all()
        assert (coords[members] + 100 <= [f.x1, f.y1]).all()
        assert seen.isdisjoint(f.patch_indices)
        seen |= set(f.patch_indices)
    assert seen == set(np.flatnonzero(prob >= 0.3).tolist())
    assert [f.score for f in fields] == sorted((f.score for f in fields), reverse=True)


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="coordinates"):
        find_fields([0.9, 0.8], [[0, 0]], 100.0)
    with pytest.raises(ValueError, match="size_l0"):
        find_fields([0.9], [[0, 0]], 0.0)
