"""``qa.generated.scored_slides``: the generated slides of a results folder with their truth
and the scores the run made (what the analysis scripts read)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cytoscreen.config import load_config
from cytoscreen.pipeline import screen
from cytoscreen.qa.generated import scored_slides


def test_scored_slides_pairs_each_slide_with_its_truth_and_scores(
    tmp_path: Path, slide_dir: Path, model_dir: Path, config_path: Path
) -> None:
    report = screen(
        [slide_dir], tmp_path / "out", load_config(config_path), model_dir=model_dir,
        scores_only=True,
    )  # fmt: skip
    scored = {r.id: r for r in report.results if r.status == "ok"}
    slides = list(scored_slides(tmp_path / "out"))
    # the broken slide has no scores, the renamed copy no truth beside it
    with_truth = {
        i for i, r in scored.items() if Path(r.path or "").with_suffix(".cells.json").is_file()
    }
    assert {s.result.id for s in slides} == with_truth and len(with_truth) == 3
    labels = {Path(s.result.path or "").name: s.truth.label for s in slides}
    assert labels == {
        "negative.tiff": "negative",
        "positive.tiff": "positive",
        "blank.tiff": "blank",
    }
    for s in slides:
        assert s.p.shape == (len(s.store.coords),)
        counts = scored[s.result.id].counts or {}
        assert np.isfinite(s.p).sum() == counts.get("n_patches", 0)
        if s.p.size:
            assert s.result.score is not None and s.result.score <= np.nanmax(s.p) + 1e-6
        assert not s.adequate_negative  # the fixtures are far below 5,000 cells
