"""Windows of virtual slides and cell patches: the model's training and evaluation examples."""

from __future__ import annotations

import numpy as np

from cytoscreen.synth import CellKit
from cytoscreen.synth.patches import EDGE_UM, VirtualSlides, cell_patches


def test_windows_hold_what_their_label_says(kit: CellKit) -> None:
    vs = VirtualSlides(
        kit, n_negative=1, n_positive=1, mpp=0.5, patch_px=64, n_cells=200,
        n_abnormal=(4, 6), seed=3,
    )  # fmt: skip
    assert vs.level == 1 and vs.size_l0 == 128
    assert len(vs.negative) == 1 and len(vs.positive) == 1
    rng = np.random.default_rng(0)
    edge = EDGE_UM / kit.mpp
    for _ in range(20):
        s, x0, y0 = vs.positive_window(rng)
        assert vs.label_of(s, x0, y0) == 1
        ab = vs.slides[s].abnormal_xy
        inside = (ab[:, 0] >= x0 + edge) & (ab[:, 0] < x0 + 128 - edge)
        inside &= (ab[:, 1] >= y0 + edge) & (ab[:, 1] < y0 + 128 - edge)
        assert inside.any()
        window = vs.negative_window(rng)
        assert window is not None and vs.label_of(*window) == 0
        assert window[0] in vs.negative  # never a positive slide's NILM neighbourhood
        img = vs.render(*window)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    # a window with an abnormal nucleus just outside its border is ambiguous, never negative
    s = vs.positive[0]
    ab = vs.slides[s].abnormal_xy
    lone = [
        (x, y) for x, y in ab  # no other abnormal nucleus inside the window beside this one
        if not ((ab[:, 0] > x) & (ab[:, 0] < x + 2 + 128 + edge)
                & (ab[:, 1] > y - 64 - edge) & (ab[:, 1] < y + 64 + edge)).any()
    ]  # fmt: skip
    assert lone
    x, y = lone[0]
    assert vs.label_of(s, x + 2, y - 64) == -1
    only_positive = VirtualSlides(
        kit, n_negative=0, n_positive=1, mpp=0.5, patch_px=64, n_cells=100, n_abnormal=(2, 3),
        seed=3,
    )  # fmt: skip
    assert only_positive.negative_window(rng) is None


def test_positive_edge_um_sets_how_far_inside_the_drawn_nucleus_lies(kit: CellKit) -> None:
    def nearest_edge(vs: VirtualSlides, n: int) -> np.ndarray:
        """Per drawn positive window: its drawn nucleus' distance to the nearest edge (px)."""
        rng = np.random.default_rng(1)
        out = []
        for _ in range(n):
            state = rng.bit_generator.state
            s, x0, y0 = vs.positive_window(rng)
            again = np.random.default_rng()
            again.bit_generator.state = state
            int(again.choice(vs.positive))  # replay the draw to find the chosen nucleus
            ab = vs.slides[s].abnormal_xy
            x, y = ab[int(again.integers(ab.shape[0]))]
            out.append(min(x - x0, x0 + vs.size_l0 - x, y - y0, y0 + vs.size_l0 - y))
        return np.array(out)

    args = dict(n_negative=0, n_positive=1, mpp=0.5, patch_px=64, n_cells=100,
                n_abnormal=(2, 3), seed=3)  # fmt: skip
    margin = EDGE_UM / kit.mpp
    default = nearest_edge(VirtualSlides(kit, **args), 200)
    assert default.min() >= margin - 1e-6  # the label's margin, as before
    cut = nearest_edge(VirtualSlides(kit, positive_edge_um=1.0, **args), 200)
    assert cut.min() >= 1.0 / kit.mpp - 1e-6
    assert (cut < margin).mean() > 0.05  # nuclei the grid cuts are now drawn too


def test_cell_patches_one_per_cell_with_its_own_label(kit: CellKit) -> None:
    cp = cell_patches(kit, mpp=0.5, patch_px=64, seed=1)
    n_cells = sum(len(f.crops) for f in kit.fields.values())
    assert len(cp.labels) + cp.skipped_nilm == n_cells
    assert set(cp.cell_ids.tolist()) | set() == set(cp.cell_ids.tolist())
    assert len(set(cp.cell_ids.tolist())) == len(cp.labels)  # each cell once
    assert cp.labels.sum() == sum(c.abnormal for f in kit.fields.values() for c in f.crops)
    assert cp.images.shape == (len(cp.labels), 64, 64, 3)
    again = cell_patches(kit, mpp=0.5, patch_px=64, seed=1)
    np.testing.assert_array_equal(cp.images, again.images)  # deterministic for a seed
