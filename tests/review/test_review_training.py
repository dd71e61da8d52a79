"""Review marks back into training patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoscreen.io import open_slide, read_at_mpp
from cytoscreen.review.marks import Mark, open_store
from cytoscreen.review.training import patch_origins, reviewed_patches, usable


@pytest.mark.parametrize(
    ("box", "side", "n"),
    [((0, 0, 128, 128), 64.0, 4), ((0, 0, 100, 100), 64.0, 1), ((0, 0, 300, 64), 64.0, 4)],
)
def test_patch_origins_grid_centred_in_the_box(
    box: tuple[int, int, int, int], side: float, n: int
) -> None:
    got = patch_origins(box, side)
    assert len(got) == n
    cx = np.mean([x + side / 2 for x, _ in got])
    cy = np.mean([y + side / 2 for _, y in got])
    assert (cx, cy) == pytest.approx(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), abs=1)
    assert len(patch_origins((0, 0, 1000, 1000), 10.0, limit=7)) == 7


def _mark(slide: str, rank: int, label: str, bethesda: str | None, at: str, who: str) -> Mark:
    x0, y0 = 100 + 200 * (rank - 1), 150 + 100 * (rank - 1)
    return Mark(slide, rank, label, bethesda, who, "tiny-model-abc", at, x0, y0, x0 + 128, y0 + 128)


def test_usable_keeps_the_latest_word_and_drops_unsure() -> None:
    marks = [
        _mark("a", 1, "normal", None, "2025-01-01", "x"),
        _mark("a", 1, "abnormal", "HSIL", "2025-01-02", "y"),
        _mark("a", 2, "unsure", None, "2025-01-01", "x"),
    ]
    assert [(m.rank, m.label) for m in usable(marks)] == [(1, "abnormal")]


def test_reviewed_patches_read_fields_at_the_model_resolution(
    results_dir: Path, review_slide: Path, ids: tuple[str, ...]
) -> None:
    with open_store(results_dir) as store:
        store.put(_mark(ids[0], 1, "abnormal", "HSIL", "2025-01-01", "dr"))
        store.put(_mark(ids[0], 3, "artefact", None, "2025-01-01", "dr"))
        store.put(_mark(ids[1], 1, "unsure", None, "2025-01-01", "dr"))
    patches = reviewed_patches(results_dir, model_mpp=0.5, patch_px=32)
    # a 128 px field at 0.25 um/px is 64 px at 0.5 um/px: 2 x 2 patches of 32 px each
    assert len(patches) == 8
    assert [p.label for p in patches] == [1] * 4 + [0] * 4
    assert {p.group for p in patches} == {f"review:{ids[0]}:1", f"review:{ids[0]}:3"}
    assert {p.category for p in patches} == {"HSIL", "artefact"}
    assert all(p.image.shape == (32, 32, 3) and p.image.dtype == np.uint8 for p in patches)
    with open_slide(review_slide) as reader:  # field 3 is x 500..628, y 350..478
        expected = {read_at_mpp(reader, (x, y), (32, 32), 0.5).tobytes()
                    for x, y in [(500, 350), (564, 350), (500, 414), (564, 414)]}  # fmt: skip
    assert {p.image.tobytes() for p in patches[4:]} == expected
    assert reviewed_patches(results_dir, model_mpp=0.5, patch_px=32, model_id="other") == []
