"""The test-field report (`cytoscreen evaluate`): figures into card.json and one test section
in the card's README, replaced (not repeated) when the report is written again."""

from __future__ import annotations

import shutil
from pathlib import Path

from cytoscreen.scoring.checkpoint import read_card
from cytoscreen.synth import bundled_kit
from cytoscreen.training import report
from cytoscreen.training.evaluate import build_eval_set
from cytoscreen.training.report import TEST_HEADING, write_test_report


def test_the_report_goes_into_the_card_and_its_readme_once(tmp_path: Path, model_dir: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    (model / "README.md").write_text(
        "# card\n\n## Validation\nval figures\n\n## Precision and layout\nbf16\n", encoding="utf-8"
    )
    test = build_eval_set(
        bundled_kit(), mpp=0.5, patch_px=32, n_slides=2, n_windows=20, n_cells=150, seed=3,
        limit_cells=60,
    )  # fmt: skip
    rep = report.test_report(model, test, 0.5, rule="max", runtime="torch")
    assert {"patch_auc", "patch_auc_cells"} <= set(rep.metrics)
    assert rep.metrics["patch_auc"].n == len(test.labels)
    assert "operating point 0.5" in rep.notes and "rule max" in rep.notes
    card = write_test_report(model, rep)
    assert card.test == rep.metrics and read_card(model).test_notes == rep.notes
    text = (model / "README.md").read_text(encoding="utf-8")
    assert text.count(TEST_HEADING) == 1
    # between validation and precision, with the cells' AUC and a row per category
    assert text.index("## Validation") < text.index(TEST_HEADING) < text.index("## Precision")
    auc = rep.metrics["patch_auc_cells"]
    assert f"{auc.value:.3f} (95% CI {auc.ci_low:.3f}-{auc.ci_high:.3f}, n={auc.n})" in text
    assert all(f"| {cat} | " in text for cat in rep.by_category)
    # written again: still one section, the rest of the card kept
    write_test_report(model, rep)
    again = (model / "README.md").read_text(encoding="utf-8")
    assert again.count(TEST_HEADING) == 1 and again.endswith("## Precision and layout\nbf16\n")
    assert "val figures" in again
