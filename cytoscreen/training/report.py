"""The model's figures on the held-out test fields, measured once and written into its card.

Test fields are never used to train, choose or calibrate anything; this report is the one place
they are scored. It gives, with counts and 95% intervals: the cells-only AUC (each labelled cell
of the test fields inside its own piece: abnormal against NILM), the AUC on windows of virtual
test slides, and at the operating point (the calibrated slide threshold applied to single
patches: exactly the slide's decision for the ``max`` rule, an approximation for others) the
sensitivity for each Bethesda class and the specificity for NILM cells and NILM windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cytoscreen.scoring.card import Metric, ModelCard
from cytoscreen.scoring.checkpoint import CARD_NAME, read_card
from cytoscreen.scoring.infer import Scorer
from cytoscreen.synth.kit import CellKit
from cytoscreen.training.config import TrainConfig
from cytoscreen.training.evaluate import CELLS, SLIDES, EvalSet, build_eval_set, positive_scores
from cytoscreen.training.metrics import auc_with_ci, category_report, sens_spec


@dataclass(frozen=True)
class TestReport:
    metrics: dict[str, Metric]
    by_category: dict[str, dict[str, float | int]]
    notes: str


def test_report(
    model_dir: str | Path,
    test: EvalSet,
    threshold: float,
    *,
    rule: str,
    runtime: str = "auto",
    seed: int = 0,
) -> TestReport:
    """Score ``test`` with the model as ``screen`` would (``runtime``) and summarise it."""
    scorer = Scorer.load(model_dir, "cpu", "auto", runtime=runtime)
    s = positive_scores(scorer, test.images)
    metrics: dict[str, Metric] = {"patch_auc": auc_with_ci(test.labels, s, seed=seed)}
    for part in (CELLS, SLIDES):
        m = test.part(part)
        if len(set(test.labels[m].tolist())) == 2:
            metrics[f"patch_auc_{part}"] = auc_with_ci(test.labels[m], s[m], seed=seed)
            metrics.update(
                {f"{k}_{part}": v for k, v in sens_spec(test.labels[m], s[m], threshold).items()}
            )
    how = scorer.describe()
    notes = (
        f"test fields only: {int(test.part(CELLS).sum())} cells (each inside its own piece; "
        f"{test.skipped_nilm} NILM cells near a labelled abnormal nucleus left out: "
        "synth.fields.NEGATIVE_CLEARANCE) and "
        f"{int(test.part(SLIDES).sum())} windows of virtual test slides; operating point "
        f"{threshold:.4g} (the calibrated slide threshold of rule {rule}, applied to each "
        f"patch); scored with {how['runtime']} {how['precision']}"
    )
    by_cat = category_report(test.labels, list(test.categories), s, threshold, seed=seed)
    return TestReport(metrics, by_cat, notes)


def test_set(cfg: TrainConfig, test_kit: CellKit, seed: int = 0) -> EvalSet:
    """The test fields' cells and virtual-slide windows, built like the validation set."""
    ctx = cfg.context
    return build_eval_set(
        test_kit,
        mpp=cfg.mpp,
        patch_px=cfg.patch_px,
        n_slides=ctx.val_slides,
        n_windows=ctx.val_windows,
        n_cells=ctx.n_cells,
        seed=seed + 101,
    )


TEST_HEADING = "## Test (held-out test fields, measured once)"


def test_section(report: TestReport) -> str:
    """The model card README's test section (markdown) for ``report``."""
    names = {
        "patch_auc_cells": "AUC, cells only (abnormal against NILM)",
        "patch_auc_slides": "AUC, windows of virtual test slides",
        "patch_auc": "AUC, all test patches",
        "sensitivity_cells": "cells: sensitivity at the operating point",
        "specificity_cells": "cells: specificity at the operating point",
        "sensitivity_slides": "windows: sensitivity at the operating point",
        "specificity_slides": "windows: specificity at the operating point",
    }
    lines = [TEST_HEADING, "", report.notes + ".", ""]
    for key, label in names.items():
        m = report.metrics.get(key)
        if m is not None:
            lines.append(f"- {label}: {m.text()}")
    lines += [
        "",
        "| category | n | flagged at the operating point | AUC vs all negatives (95% CI) |",
        "|---|---|---|---|",
    ]
    for cat, r in report.by_category.items():
        auc = (
            f"{r['auc']:.3f} ({r['auc_ci_low']:.3f}-{r['auc_ci_high']:.3f})" if "auc" in r else "-"
        )
        lines.append(f"| {cat} | {r['n']} | {r['flagged']} | {auc} |")
    return "\n".join(lines) + "\n"


def write_test_report(model_dir: str | Path, report: TestReport) -> ModelCard:
    """Record the report in the model's card.json (the weights and their digest unchanged) and
    put its test section into the card's README.md (replacing an earlier one)."""
    from cytoscreen.fsutil import write_text_atomic

    card = read_card(model_dir).model_copy(
        update={"test": report.metrics, "test_by_category": report.by_category,
                "test_notes": report.notes}
    )  # fmt: skip
    write_text_atomic(Path(model_dir) / CARD_NAME, card.model_dump_json(indent=2))
    readme = Path(model_dir) / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        head, found, rest = text.partition(TEST_HEADING)
        tail = ""
        if found:  # keep what follows the old section (from its next "## " heading on)
            _, nxt, after = rest.partition("\n## ")
            tail = "\n## " + after if nxt else ""
            text = head.rstrip("\n") + "\n\n" + test_section(report) + tail
        else:  # before "## Precision" when there is one, else at the end
            before, sep, after = text.partition("## Precision")
            text = (
                before.rstrip("\n") + "\n\n" + test_section(report) + "\n" + sep + after
                if sep
                else text.rstrip("\n") + "\n\n" + test_section(report)
            )
        write_text_atomic(readme, text)
    return card
