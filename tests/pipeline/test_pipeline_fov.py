"""Field-of-view sized fields by non-maximum suppression."""

from __future__ import annotations

import numpy as np
import pytest

from cytoscreen.outputs import select_fields
from cytoscreen.slide import FieldSettings, find_fields

S = 100.0  # patch side, level-0 px


def _grid(n: int) -> np.ndarray:
    ys, xs = np.mgrid[0:n, 0:n]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64) * int(S)


def test_dense_area_splits_into_bounded_fields_where_transitive_merge_does_not() -> None:
    coords = _grid(30)
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.6, 1.0, size=len(coords))  # everything suspicious
    settings = FieldSettings(min_score=0.5, max_fields=20)
    merged = find_fields(prob, coords, S, settings)
    assert len(merged) == 1 and len(merged[0].patch_indices) == 900  # the problem
    fields = select_fields(prob, coords, S, settings)
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
    coords = _grid(6)  # index = 6 * row + column
    prob = np.full(36, 0.1)
    prob[14] = 0.95  # (2, 2): the seed
    prob[15] = 0.7  # right neighbour: joins
    prob[8] = np.nan  # above: unreadable, never joins
    prob[0] = 0.8  # two patches away: suppressed, no field of its own
    prob[5] = 0.75  # three patches away: its own field
    fields = select_fields(prob, coords, S, FieldSettings(min_score=0.5))
    assert [f.patch_indices for f in fields] == [(14, 15), (5,)]
    assert (fields[0].x0, fields[0].y0, fields[0].x1, fields[0].y1) == (200, 200, 400, 300)


def test_nothing_suspicious_gives_no_fields_and_bad_input_is_refused() -> None:
    assert select_fields(np.full(4, 0.1), _grid(2), S) == ()
    assert select_fields(np.full(4, np.nan), _grid(2), S) == ()
    with pytest.raises(ValueError, match="coordinates"):
        select_fields(np.zeros(3), _grid(2), S)
