"""``scoring.precision: auto`` prefers a precision some calibration describes (resolve)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from cytoscreen.config import load_config
from cytoscreen.resolve import (
    DEFAULT_MODEL_DIR,
    deciding_calibration,
    resolve_calibration,
    resolve_model,
)
from cytoscreen.scoring import openvino_engine
from cytoscreen.scoring.engines import card_verdict


def test_auto_precision_scores_as_a_calibration_describes(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    # PyTorch on a CPU (a lab without OpenVINO), the bundled model and its shipped
    # calibrations: OpenVINO fp32 (which PyTorch fp32 on the CPU counts as) and OpenVINO bf16
    bundled = {"patch_size": 224, "target_mpp": 0.25}
    cfg = load_config(
        write_config(tmp_path / "torch.yaml", scoring={"runtime": "torch"}, tiling=bundled)
    )
    model = resolve_model(cfg, None)
    cal = resolve_calibration(cfg, model, None)
    plain = model.scorer(cfg).describe()  # the card's choice, as before
    chosen = model.scorer(cfg, cal).describe()
    assert chosen["runtime"] == "torch"
    assert cal.describes(chosen), chosen  # its slides can be set aside
    if cal.describes(plain):
        assert chosen == plain
    else:  # PyTorch bf16: no calibration made on it; fp32 is, so auto takes fp32 and says why
        assert plain["precision"] == "bf16" and chosen["precision"] == "fp32"
        assert "no calibration of this model describes torch bf16" in chosen["runtime_note"]
    # an explicit precision is kept, described or not (a screen then says so per slide)
    bf16 = load_config(
        write_config(
            tmp_path / "bf16.yaml",
            scoring={"runtime": "torch", "precision": "bf16"},
            tiling=bundled,
        )
    )
    kept = model.scorer(bf16, cal).describe()
    assert kept["precision"] == "bf16" and not cal.describes(kept)


@pytest.mark.skipif(not openvino_engine.installed(), reason="openvino is not installed")
def test_auto_openvino_runs_the_fastest_precision_the_card_and_a_calibration_allow(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    # the bundled model, the default runtime (auto): OpenVINO, in int8 where its quantised
    # graph ships, this CPU has int8 dot-product instructions and the card proves int8
    # (scripts/revalidate_card.py), else bf16 where the CPU runs it natively and the card
    # proves it; calibration.int8.json / calibration.bf16.json describe such scores
    bundled = {"patch_size": 224, "target_mpp": 0.25}
    cfg = load_config(write_config(tmp_path / "auto.yaml", tiling=bundled))
    model = resolve_model(cfg, None)
    cal = resolve_calibration(cfg, model, None)
    chosen = model.scorer(cfg, cal).describe()
    assert chosen["runtime"] == "openvino", chosen
    int8 = (
        card_verdict(model.card, "openvino", "int8") is None
        and openvino_engine.int8_shipped(model.dir)
        and openvino_engine.int8_native()
    )
    bf16 = card_verdict(model.card, "openvino", "bf16") is None and openvino_engine.bf16_native()
    expect = "int8" if int8 else "bf16" if bf16 else "fp32"
    assert chosen["precision"] == expect, chosen
    assert cal.describes(chosen)
    # without a calibration of int8 scores auto steps back to bf16 (the next fastest that one
    # describes), without one of bf16 or int8 to fp32
    no_int8 = replace(
        cal, alternatives=tuple(a for a in cal.alternatives if "int8" not in a.path.name)
    )
    stepped = model.scorer(cfg, no_int8).describe()
    assert stepped["precision"] == ("bf16" if bf16 else "fp32") and no_int8.describes(stepped)
    if int8:
        assert "no calibration of this model describes openvino int8" in stepped["runtime_note"]
    only_fp32 = replace(cal, alternatives=())
    fallback = model.scorer(cfg, only_fp32).describe()
    assert fallback["precision"] == "fp32" and only_fp32.describes(fallback), fallback
    if expect != "fp32":
        assert f"describes openvino {expect}" in fallback["runtime_note"]


def test_the_demo_prints_the_calibration_that_decided(tmp_path: Path) -> None:
    # `cytoscreen demo` prints the promise of the calibration its slides were decided by: the
    # one run.json lists that was made on scores like the run's
    model = Path(DEFAULT_MODEL_DIR)
    fp32, bf16 = model / "calibration.json", model / "calibration.bf16.json"
    int8 = model / "calibration.int8.json"
    record = {"path": str(fp32), "alternatives": [{"path": str(bf16)}, {"path": str(int8)}]}

    def decided(**scoring: str) -> Path:
        run = {"calibration": record, "scoring": scoring}
        (tmp_path / "run.json").write_text(json.dumps(run), encoding="utf-8")
        return deciding_calibration(tmp_path)

    assert decided(runtime="openvino", precision="bf16", device="cpu") == bf16
    assert decided(runtime="openvino", precision="int8", device="cpu") == int8
    assert decided(runtime="openvino", precision="fp32", device="cpu") == fp32
    assert decided(runtime="torch", precision="fp32", device="cpu") == fp32  # counts as fp32
    assert decided(runtime="torch", precision="fp16", device="cuda:0") == fp32  # none: its own
