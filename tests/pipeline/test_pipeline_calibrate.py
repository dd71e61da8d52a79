"""``cytoscreen calibrate`` end to end: scores-only screen of a labelled set, then calibrate."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cytoscreen.calibration import calibrate_from_results
from cytoscreen.cli import app
from cytoscreen.config import load_config
from cytoscreen.errors import BadCalibration
from cytoscreen.fsutil import shown_path
from cytoscreen.pipeline import screen
from cytoscreen.resolve import resolve_calibration, resolve_model
from cytoscreen.slide import load_calibration
from cytoscreen.synth import bundled_kit, make_slide_set
from cytoscreen.synth.patches import Conditions
from cytoscreen.types import Outcome


def test_calibrate_from_a_screened_manifest(
    tmp_path: Path, model_dir: Path, config_path: Path, write_config: Callable[..., Path]
) -> None:
    manifest = make_slide_set(
        tmp_path / "set",
        n_negative=2,
        n_positive=2,
        n_cells=150,
        n_blank=1,
        kit=bundled_kit(),
        only="train",
        n_abnormal=3,
        conditions=Conditions(
            density={"liquid": (3000.0, 3000.0), "conventional": (3000.0, 3000.0)}
        ),
    )
    out = tmp_path / "results"
    runner = CliRunner()
    screened = runner.invoke(
        app,
        [
            "screen",
            str(manifest.parent / "slides"),
            "--out",
            str(out),
            "--config",
            str(config_path),
            "--model",
            str(model_dir),
            "--scores-only",
        ],
    )
    assert screened.exit_code == 0, screened.output
    target = tmp_path / "calibration.json"
    result = runner.invoke(
        app,
        [
            "calibrate",
            "--manifest",
            str(manifest),
            "--results",
            str(out),
            "--out",
            str(target),
            "--target",
            "0.9",
            "--min-cells",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    cal = load_calibration(target)
    assert (cal.tp + cal.fn, cal.tn + cal.fp, cal.n_slides) == (2, 2, 4)  # blank left out
    assert cal.tp == 2  # the threshold meets the target on this set
    # the manifest of a generated set carries its strata: figures are kept per stratum
    assert cal.strata["n_abnormal"]["2-3"].sensitivity is not None
    assert cal.strata["n_abnormal"]["0"].specificity is not None
    assert set(cal.strata["prep"]) <= {"liquid", "conventional"}
    assert "n_abnormal 2-3" in result.output
    assert cal.applicability is None  # 2 negatives are too few to fit a score reference
    assert shown_path(manifest) in cal.data_source  # relative when under the working dir
    assert "sensitivity" in result.output and "CI" in result.output
    assert cal.target_at == "lower_bound" and "as the 95% lower bound" in result.output
    assert "left out synth_0000_004: blank" in result.output
    # the new calibration fits the model and the config it was made with
    cfg = load_config(config_path)
    choice = resolve_calibration(cfg, resolve_model(cfg, model_dir), target)
    assert choice.calibration.threshold == cal.threshold
    # it records how its scores were made; a screen that scores otherwise says so per slide
    assert cal.scoring == {"runtime": "torch", "precision": "fp32"}
    bf16_config = write_config(tmp_path / "bf16.yaml", scoring={"precision": "bf16"})
    bf16 = load_config(bf16_config)
    report = screen(
        [manifest.parent / "slides"], tmp_path / "bf16", bf16, model_dir=model_dir,
        calibration_path=target,
    )  # fmt: skip
    (warning,) = report.warnings  # said once for the run, recorded in run.json
    assert "calibrated on torch fp32 scores" in warning and "torch bf16" in warning
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["warnings"] == [warning]
    decided = [r for r in report.results if r.outcome and r.counts and r.counts["n_patches"]]
    assert decided
    kept_back: list[str] = []
    for r in decided:
        assert any("calibrated on torch fp32 scores" in w and "torch bf16" in w
                   for w in r.warnings), r.warnings  # fmt: skip
        # and none is set aside: a slide under the threshold goes to review, saying why first
        assert r.outcome is not Outcome.NEGATIVE
        if r.outcome is Outcome.REVIEW and r.score is not None and r.score < cal.threshold:
            assert r.reasons[0].startswith("review: the threshold was calibrated on torch fp32")
            kept_back.append(r.id)
    assert kept_back  # the negatives score under the threshold: each would have been NEGATIVE
    cli = runner.invoke(app, ["screen", str(manifest.parent / "slides"), "--out",
                              str(tmp_path / "bf16-cli"), "--config", str(bf16_config),
                              "--model", str(model_dir), "--calibration", str(target)])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert "warning:" in cli.output and "torch bf16" in cli.output
    same = screen([manifest.parent / "slides"], tmp_path / "fp32", cfg, model_dir=model_dir,
                  calibration_path=target)  # fmt: skip
    assert not any("calibrated on" in w for r in same.results for w in r.warnings)
    assert same.warnings == []
    # a calibration made on bf16 scores beside the model's own decides its bf16-scored slides
    shutil.copytree(model_dir, tmp_path / "model")
    shutil.copy(target, tmp_path / "model" / "calibration.json")
    scored_bf16 = screen([manifest.parent / "slides"], tmp_path / "bf16-scores", bf16,
                         model_dir=tmp_path / "model", scores_only=True)  # fmt: skip
    assert scored_bf16.results
    bf16_cal = calibrate_from_results(
        manifest, tmp_path / "bf16-scores", tmp_path / "model" / "calibration.bf16.json",
        target_sensitivity=0.9, min_cells={"liquid": 0, "conventional": 0},
    ).calibration  # fmt: skip
    assert bf16_cal.scoring == {"runtime": "torch", "precision": "bf16"}
    choice = resolve_calibration(bf16, resolve_model(bf16, tmp_path / "model"))
    assert [a.calibration for a in choice.alternatives] == [bf16_cal]
    assert choice.for_scoring({"runtime": "torch", "precision": "bf16", "device": "cpu"}) \
        .calibration == bf16_cal  # fmt: skip
    assert choice.for_scoring({"runtime": "torch", "precision": "fp32", "device": "cpu"}) is choice
    matched = screen([manifest.parent / "slides"], tmp_path / "bf16-matched", bf16,
                     model_dir=tmp_path / "model")  # fmt: skip
    assert matched.warnings == []
    for r in matched.results:
        assert not any("calibrated on" in w for w in r.warnings)
        if r.outcome in (Outcome.NEGATIVE, Outcome.REVIEW):
            assert r.threshold == bf16_cal.threshold
    assert any(r.outcome is Outcome.NEGATIVE for r in matched.results)  # set aside again
    run = json.loads((tmp_path / "bf16-matched" / "run.json").read_text())
    assert run["calibration"]["alternatives"][0]["scoring"]["precision"] == "bf16"
    # a calibration named on the command line stands alone
    named = resolve_calibration(bf16, resolve_model(bf16, tmp_path / "model"), target)
    assert named.alternatives == ()
    # slides scored in different ways make no calibration
    first = sorted((out / "slides").glob("*/result.json"))[0]
    record = json.loads(first.read_text())
    record["scoring"] = {**record["scoring"], "precision": "bf16"}
    first.write_text(json.dumps(record))
    with pytest.raises(BadCalibration, match="scored in different ways"):
        calibrate_from_results(manifest, out, tmp_path / "mixed.json")
