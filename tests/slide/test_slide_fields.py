"""Suspicious fields by non-maximum suppression: field size, members, boxes, ranking, ties,
NaN handling, merge gap, max_fields, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from cytoscreen.slide import FieldSettings, find_fields

NAN = float("nan")
S = 100.0  # patch side, level-0 px


def grid(nx: int, ny: int, stride: int) -> np.ndarray:
    ys, xs = np.mgrid[0:ny, 0:nx]
    return np.stack([xs.ravel() * stride, ys.ravel() * stride], axis=1).astype(np.int64)


def chebyshev(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).max())


def test_adjacent_patches_join_the_seed_in_one_box() -> None:
    coords = grid(4, 4, 100)  # index = row * 4 + col
    prob = np.zeros(16)
    prob[[0, 1]] = [0.7, 0.9]  # side by side, top-left
    prob[15] = 0.6  # far corner, alone
    fields = find_fields(prob, coords, S)
    assert [(f.rank, f.patch_indices) for f in fields] == [(1, (1, 0)), (2, (15,))]  # seed first
    top, other = fields
    assert top.score == pytest.approx(0.9)
    assert (top.x0, top.y0, top.x1, top.y1) == (0, 0, 200, 100)
    assert (other.x0, other.y0, other.x1, other.y1) == (300, 300, 400, 400)


def test_diagonal_neighbour_joins_but_a_chain_is_not_merged_transitively() -> None:
    coords = grid(4, 4, 100)
    prob = np.zeros(16)
    prob[[0, 5, 10, 11]] = 0.8  # diagonal chain, then a right neighbour; ties: lowest index seeds
    first, second = find_fields(prob, coords, S)
    assert first.patch_indices == (0, 5)  # corner-touching neighbour joins
    assert (first.x0, first.y0, first.x1, first.y1) == (0, 0, 200, 200)
    # 10 is two patches from seed 0: suppressed as a seed, but joins the field seeded at 11
    assert second.patch_indices == (11, 10)
    assert (second.x0, second.y0, second.x1, second.y1) == (200, 200, 400, 300)


def test_dense_area_splits_into_bounded_fields() -> None:
    coords = grid(30, 30, 100)
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.6, 1.0, size=len(coords))  # everything suspicious
    fields = find_fields(prob, coords, S, FieldSettings(min_score=0.5, max_fields=20))
    assert len(fields) == 20
    assert fields[0].patch_indices[0] == int(np.argmax(prob))
    scores = [f.score for f in fields]
    assert scores == sorted(scores, reverse=True)
    assert [f.rank for f in fields] == list(range(1, 21))
    for f in fields:
        assert f.x1 - f.x0 <= 3 * S and f.y1 - f.y0 <= 3 * S
        assert f.score == pytest.approx(prob[f.patch_indices[0]])
    members = [i for f in fields for i in f.patch_indices]
    assert len(members) == len(set(members))  # no patch in two fields
    seeds = coords[[f.patch_indices[0] for f in fields]]
    d = np.abs(seeds[:, None, :] - seeds[None, :, :]).max(axis=2)
    assert d[~np.eye(len(seeds), dtype=bool)].min() > 2 * S  # seeds are suppressed nearby


def test_field_takes_above_threshold_neighbours_only_and_skips_nan() -> None:
    coords = grid(6, 6, 100)  # index = 6 * row + column
    prob = np.full(36, 0.1)
    prob[14] = 0.95  # (2, 2): the seed
    prob[15] = 0.7  # right neighbour: joins
    prob[8] = NAN  # above: unreadable, never joins
    prob[0] = 0.8  # two patches away: suppressed, no field of its own
    prob[5] = 0.75  # three patches away: its own field
    fields = find_fields(prob, coords, S, FieldSettings(min_score=0.5))
    assert [f.patch_indices for f in fields] == [(14, 15), (5,)]
    assert (fields[0].x0, fields[0].y0, fields[0].x1, fields[0].y1) == (200, 200, 400, 300)


def test_gap_tolerance_and_overlap() -> None:
    coords = np.array([[0, 0], [101, 0], [300, 0], [350, 0]])  # 1 px gap; then 50 px overlap
    prob = np.array([0.9, 0.8, 0.7, 0.6])
    merged = find_fields(prob, coords, S, FieldSettings(merge_gap_px=1.0))
    assert [f.patch_indices for f in merged] == [(0, 1), (2, 3)]
    strict = find_fields(prob, coords, S, FieldSettings(merge_gap_px=0.0))
    # 1 px too far to join seed 0, too near to seed a field of its own
    assert [f.patch_indices for f in strict] == [(0,), (2, 3)]


def test_suppression_distance() -> None:
    coords = grid(4, 1, 100)
    prob = [0.9, 0.1, 0.8, 0.7]  # 2 is two patches from seed 0, 3 is three
    # 2 may not seed, but joins the field of 3
    assert [f.patch_indices for f in find_fields(prob, coords, S)] == [(0,), (3, 2)]
    wide = find_fields(prob, coords, S, suppress_patches=3.0)
    assert [f.patch_indices for f in wide] == [(0,)]
    narrow = find_fields(prob, coords, S, suppress_patches=1.0)
    assert [f.patch_indices for f in narrow] == [(0,), (2, 3)]


def test_fractional_patch_size_rounds_box_outwards() -> None:
    (field,) = find_fields([0.9], [[10, 20]], 100.4)
    assert (field.x0, field.y0, field.x1, field.y1) == (10, 20, 111, 121)


def test_nan_and_low_patches_never_form_fields() -> None:
    coords = grid(3, 1, 100)
    assert find_fields([NAN, 0.49, NAN], coords, S) == ()
    assert find_fields(np.full(4, NAN), grid(2, 2, 100), S) == ()
    assert find_fields([], np.zeros((0, 2)), S) == ()
    assert find_fields([0.2, 0.1, 0.0], coords, S, FieldSettings(min_score=0.0))[0].score == 0.2


def test_nan_neighbours_never_join() -> None:
    fields = find_fields([NAN, 0.9, NAN], grid(3, 1, 100), S)
    assert [f.patch_indices for f in fields] == [(1,)]
    assert (fields[0].x0, fields[0].x1) == (100, 200)


def test_rank_by_score_ties_by_index_and_top_n() -> None:
    coords = grid(9, 1, 300)  # 100 px patches 300 px apart: none joins or suppresses another
    prob = np.array([0.6, 0.9, 0.7, 0.9, 0.55, 0.8, 0.65, 0.75, 0.95])
    fields = find_fields(prob, coords, S, FieldSettings(max_fields=4))
    assert [f.patch_indices[0] for f in fields] == [8, 1, 3, 5]
    assert [f.rank for f in fields] == [1, 2, 3, 4]
    assert len(find_fields(prob, coords, S)) == 9


def test_deterministic_and_order_independent() -> None:
    rng = np.random.default_rng(3)
    coords = grid(30, 30, 100)
    prob = rng.random(900)
    prob[rng.integers(0, 900, 40)] = np.nan
    first = find_fields(prob, coords, S)
    assert find_fields(prob.copy(), coords.copy(), S) == first
    perm = rng.permutation(900)
    shuffled = find_fields(prob[perm], coords[perm], S)
    boxes = {(f.x0, f.y0, f.x1, f.y1, f.score) for f in first}
    assert {(f.x0, f.y0, f.x1, f.y1, f.score) for f in shuffled} == boxes


def test_field_score_is_its_best_patch_and_every_suspicious_patch_is_covered() -> None:
    rng = np.random.default_rng(4)
    coords = grid(20, 20, 50)  # 100 px patches at stride 50: overlapping
    prob = rng.random(400) ** 4
    fields = find_fields(prob, coords, S, FieldSettings(min_score=0.3, max_fields=1000))
    seen: set[int] = set()
    for f in fields:
        members = np.array(f.patch_indices)
        assert f.score == pytest.approx(prob[members].max())
        assert (prob[members] >= 0.3).all()
        assert all(chebyshev(coords[m], coords[members[0]]) <= S + 1 for m in members)
        assert (coords[members] >= [f.x0, f.y0]).all()
        assert (coords[members] + 100 <= [f.x1, f.y1]).all()
        assert seen.isdisjoint(f.patch_indices)
        seen |= set(f.patch_indices)
    seeds = coords[[f.patch_indices[0] for f in fields]]
    for i in set(np.flatnonzero(prob >= 0.3).tolist()) - seen:  # left out: suppressed by a seed
        assert min(chebyshev(coords[i], s) for s in seeds) <= 2 * S + 1
    assert [f.score for f in fields] == sorted((f.score for f in fields), reverse=True)


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="coordinates"):
        find_fields([0.9, 0.8], [[0, 0]], S)
    with pytest.raises(ValueError, match="coordinates"):
        find_fields(np.zeros(3), grid(2, 2, 100), S)
    with pytest.raises(ValueError, match="size_l0"):
        find_fields([0.9], [[0, 0]], 0.0)
    with pytest.raises(ValueError, match="suppress_patches"):
        find_fields([0.9], [[0, 0]], S, suppress_patches=0.5)


def test_field_score_is_its_best_patch_and_ranks_follow_scores() -> None:
    # seed A (0.9) at x=0; B (0.8) at x=300 is within 2 patch sides of A, so it cannot seed,
    # and is too far to join A; C (0.6) at x=450 seeds a field that B joins: that field's best
    # patch is B, so its score is 0.8, not its seed's 0.6.
    size = 224.0
    coords = np.array([[0, 0], [300, 0], [450, 0]])
    prob = np.array([0.9, 0.8, 0.6])
    fields = find_fields(prob, coords, size, FieldSettings(min_score=0.5, merge_gap_px=0.0))
    assert [f.score for f in fields] == [0.9, 0.8]
    assert [f.rank for f in fields] == [1, 2]
    assert set(fields[1].patch_indices) == {1, 2}
