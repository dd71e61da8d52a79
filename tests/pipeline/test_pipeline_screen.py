"""End to end: ``cytoscreen screen`` on tiny synthetic slides with a tiny model."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cytoscreen.batch.lock import LOCK_NAME
from cytoscreen.cli import app
from cytoscreen.config import load_config
from cytoscreen.errors import BadCalibration, BadCheckpoint, ConfigError
from cytoscreen.pipeline import screen

FILES = (
    "result.json",
    "fields.csv",
    "fields.json",
    "fields.geojson",
    "thumbnail.png",
    "heatmap.png",
)


@pytest.fixture(scope="module")
def screened(
    tmp_path_factory: pytest.TempPathFactory, slide_dir: Path, model_dir: Path, config_path: Path
) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("results")
    result = CliRunner().invoke(
        app,
        [
            "screen",
            str(slide_dir),
            "--out",
            str(out),
            "--config",
            str(config_path),
            "--model",
            str(model_dir),
        ],
    )
    return out, result


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as fh:
        return {Path(r["path"]).name: r for r in csv.DictReader(fh)}


def test_bad_slide_fails_alone_and_exit_code_is_nonzero(screened: tuple[Path, Any]) -> None:
    out, result = screened
    assert result.exit_code == 1, result.output
    rows = _summary(out)
    assert set(rows) == {
        "negative.tiff",
        "positive.tiff",
        "blank.tiff",
        "broken.svs",
        'odd, "name".tiff',
    }
    assert rows["broken.svs"]["status"] == "failed"
    assert (
        "broken.svs" in rows["broken.svs"]["error"] and "--backend" in rows["broken.svs"]["error"]
    )
    assert all(rows[n]["status"] == "ok" for n in rows if n != "broken.svs")


def test_blank_is_not_assessable_and_others_are_decided(screened: tuple[Path, Any]) -> None:
    rows = _summary(screened[0])
    assert rows["blank.tiff"]["outcome"] == "not_assessable"
    assert rows["blank.tiff"]["score"] == ""
    for name in ("negative.tiff", "positive.tiff"):
        assert rows[name]["outcome"] in ("negative", "review")
        assert 0.0 <= float(rows[name]["score"]) <= 1.0
        assert float(rows[name]["threshold"]) == pytest.approx(0.6)
        assert int(rows[name]["n_patches"]) > 0


def test_csv_quoting_round_trips_odd_names(screened: tuple[Path, Any]) -> None:
    out = screened[0]
    text = (out / "summary.csv").read_text(encoding="utf-8")
    assert '"' in text  # the odd name forced quoting
    odd = _summary(out)['odd, "name".tiff']
    assert odd["path"].endswith('sub/odd, "name".tiff')
    assert odd["outcome"] in ("negative", "review")
    assert len(odd["top_field"].split(";")) == 4


def test_per_slide_outputs_and_provenance(screened: tuple[Path, Any], model_dir: Path) -> None:
    out = screened[0]
    cal_sha = hashlib.sha256((model_dir / "calibration.json").read_bytes()).hexdigest()
    ok = [d for d in (out / "slides").iterdir() if d.name.startswith("positive-")]
    assert len(ok) == 1
    for name in FILES:
        assert (ok[0] / name).is_file(), name
    r = json.loads((ok[0] / "result.json").read_text())
    assert r["calibration"]["sha256"] == cal_sha
    assert r["model_id"].startswith("test_efficientnet-")
    assert r["reasons"] and r["version"] and r["config_hash"]
    assert set(r["timings"]) >= {"tiling", "scoring", "deciding", "images", "total"}
    assert len(r["fields"]) == r["counts"]["n_fields"] <= 20
    for f in r["fields"]:
        assert (ok[0] / f["image"]).is_file()
        assert f["n_patches"] <= 9  # field-of-view sized: at most 3 x 3 patches
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["id"] == r["model_id"] and run["calibration"]["sha256"] == cal_sha
    assert run["finished"] and run["versions"]["torch"]
    # the runtime actually used is recorded: the test model's card holds no OpenVINO AUC, so
    # `scoring.runtime: auto` stays on PyTorch and says why
    assert r["scoring"] == run["scoring"]
    assert r["scoring"]["runtime"] == "torch" and "PyTorch" in r["scoring"]["runtime_note"]
    assert (out / "config.resolved.yaml").is_file()
    results = json.loads((out / "results.json").read_text())
    assert len(results["slides"]) == 5
    assert not (out / LOCK_NAME).exists()


def test_geojson_is_a_valid_feature_collection(screened: tuple[Path, Any]) -> None:
    out = screened[0]
    folder = next(d for d in (out / "slides").iterdir() if d.name.startswith("negative-"))
    gj = json.loads((folder / "fields.geojson").read_text())
    fields = json.loads((folder / "fields.json").read_text())["fields"]
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == len(fields) > 0
    for feat, f in zip(gj["features"], fields, strict=True):
        assert feat["type"] == "Feature" and feat["geometry"]["type"] == "Polygon"
        ring = feat["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) == 5
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        assert (min(xs), min(ys), max(xs), max(ys)) == (f["x0"], f["y0"], f["x1"], f["y1"])
        props = feat["properties"]
        assert props["objectType"] == "annotation"
        assert props["name"] == f"field {f['rank']} ({f['score']:.2f})"
        assert set(props["classification"]) == {"name", "color"}
        assert all(isinstance(v, int | float) for v in props["measurements"].values())


def test_rerun_skips_finished_and_retries_failed(
    screened: tuple[Path, Any], slide_dir: Path, model_dir: Path, config_path: Path
) -> None:
    out = screened[0]
    cfg = load_config(config_path)
    report = screen([slide_dir], out, cfg, model_dir=model_dir)
    assert len(report.skipped) == 4
    failed = [r for r in report.results if r.status == "failed"]
    assert [Path(str(r.path)).name for r in failed] == ["broken.svs"]
    assert (failed[0].timings or {})["total"] >= 0  # retried: a fresh result was written
    # a config change that alters results invalidates them: all slides run again
    again = screen(
        [slide_dir], out, load_config(config_path, {"fields.max_fields": 2}), model_dir=model_dir
    )
    assert again.skipped == []
    assert all(len(r.fields) <= 2 for r in again.results)
    # so does another inference precision: the scores would differ from the ones recorded
    changed = {"fields.max_fields": 2, "scoring.precision": "bf16"}
    bf16 = screen([slide_dir], out, load_config(config_path, changed), model_dir=model_dir)
    assert bf16.skipped == []
    assert {(r.scoring or {})["precision"] for r in bf16.results if r.status == "ok"} == {"bf16"}
    # a rule the calibration was not made for is refused before any slide is touched
    with pytest.raises(BadCalibration, match="rule"):
        screen(
            [slide_dir],
            out,
            load_config(config_path, {"aggregation.top_k": 3}),
            model_dir=model_dir,
        )


def test_second_run_is_refused_while_locked(
    screened: tuple[Path, Any], slide_dir: Path, model_dir: Path, config_path: Path
) -> None:
    out = screened[0]
    lock = out / LOCK_NAME
    import socket

    lock.write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"})
    )
    try:
        result = CliRunner().invoke(
            app,
            [
                "screen",
                str(slide_dir),
                "--out",
                str(out),
                "--config",
                str(config_path),
                "--model",
                str(model_dir),
            ],
        )
        assert result.exit_code == 2
        assert "another cytoscreen screen run" in result.output
    finally:
        lock.unlink()


def test_missing_model_and_calibration_say_what_to_pass(
    tmp_path: Path,
    slide_dir: Path,
    model_dir: Path,
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cytoscreen.resolve as resolve

    monkeypatch.setattr(resolve, "DEFAULT_MODEL_DIR", tmp_path / "none")
    cfg = load_config(config_path)
    with pytest.raises(BadCheckpoint, match="--model"):
        screen([slide_dir], tmp_path / "out", cfg)
    with pytest.raises(BadCalibration, match="--calibration"):
        screen(
            [slide_dir],
            tmp_path / "out",
            cfg,
            model_dir=model_dir,
            calibration_path=tmp_path / "missing.json",
        )


def test_a_scoring_setting_this_machine_cannot_honour_stops_the_run_before_tiling(
    tmp_path: Path,
    slide_dir: Path,
    model_dir: Path,
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cytoscreen.scoring import device

    monkeypatch.setattr(device, "cuda_ruled_out", lambda: False)  # ask torch: it has no GPU
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = load_config(config_path, {"scoring.device": "cuda"})
    with pytest.raises(ConfigError, match="cuda") as err:
        screen([slide_dir], tmp_path / "out", cfg, model_dir=model_dir)
    assert "scoring.device" in (err.value.hint or "")
    assert not any((tmp_path / "out").rglob("*.zarr"))  # nothing was tiled
    assert not list((tmp_path / "out" / "slides").glob("*/result.json"))


def test_the_model_is_loaded_once_per_batch(
    tmp_path: Path,
    slide_dir: Path,
    model_dir: Path,
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cytoscreen.scoring.checkpoint as checkpoint

    loads: list[Path] = []
    real = checkpoint.load_checkpoint

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "load_checkpoint", counting)
    report = screen([slide_dir], tmp_path / "out", load_config(config_path), model_dir=model_dir)
    scored = [r for r in report.results if r.status == "ok" and r.counts and r.counts["n_patches"]]
    assert len(scored) >= 2  # several slides were scored ...
    assert loads == [model_dir]  # ... with one load of the checkpoint
