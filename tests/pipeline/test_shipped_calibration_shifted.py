"""The shipped model and calibration on slides made outside the calibration's ranges (issue 21):
a positive slide with a shifted stain, focus and JPEG quality is never called NEGATIVE.

The slides are small (a few hundred cells, so the adequacy minimum is lowered to match) and
built from the bundled kit, whose fields are test fields: the calibration never saw them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytoscreen.config import load_config
from cytoscreen.pipeline import screen
from cytoscreen.resolve import DEFAULT_MODEL_DIR

SHIPPED = DEFAULT_MODEL_DIR / "calibration.json"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no calibration shipped with the model")
@pytest.mark.parametrize(
    ("stain", "focus_um", "quality", "prep"),
    [(1.3, 1.2, 45, "liquid"), (0.7, 0.9, 55, "conventional")],
)
def test_a_shifted_positive_slide_is_never_called_negative(
    tmp_path: Path, stain: float, focus_um: float, quality: int, prep: str
) -> None:
    from cytoscreen.synth import bundled_kit, generate_slide
    from cytoscreen.synth.layout import SlideSpec, size_for

    density = 250.0 if prep == "liquid" else 2500.0
    spec = SlideSpec(
        size=size_for(400, density, prep),  # type: ignore[arg-type]
        label="positive", seed=7, prep=prep, density=density, n_cells=400,  # type: ignore[arg-type]
        n_abnormal=1, stain=stain, focus_um=focus_um, quality=quality, blood=0.3,
    )  # fmt: skip
    truth = generate_slide(tmp_path / "shifted.tiff", spec, bundled_kit())
    assert 1 <= truth.n_abnormal <= 6  # one abnormal piece (its field may hold neighbours)
    cfg = load_config(overrides={"triage.min_cellularity": 100})
    report = screen([tmp_path / "shifted.tiff"], tmp_path / "out", cfg, calibration_path=SHIPPED)
    (result,) = report.results
    assert result.status == "ok", result
    assert result.outcome in ("review", "not_assessable"), result.reasons
