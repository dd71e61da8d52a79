"""Every bad setting of every command that takes one (runtime, precision, device, backend, a
missing optional package) ends in the error panel with exit code 2, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cytoscreen.cli import app
from cytoscreen.scoring import openvino_engine

DATA = Path(__file__).resolve().parents[1] / "data"


def _refused(args: list[str], *words: str) -> None:
    res = CliRunner().invoke(app, args)
    # an uncaught exception would be held in res.exception (exit code 1), not a SystemExit
    assert isinstance(res.exception, SystemExit), (args, res.exception, res.output)
    assert res.exit_code == 2, (args, res.output)
    assert "error:" in res.output and "Traceback" not in res.output, res.output
    for word in words:
        assert word in res.output, (args, word, res.output)


@pytest.fixture
def no_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openvino_engine, "installed", lambda: False)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_score_refuses_each_bad_setting(
    tmp_path: Path,
    model_dir: Path,
    write_config: Callable[..., Path],
    no_openvino: None,
    no_gpu: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = ["score", str(tmp_path / "a.zarr"), "--model", str(model_dir)]
    cpu = ["--config", str(write_config(tmp_path / "cpu.yaml"))]  # scoring.device: cpu
    # the known failure of issue 20: OpenVINO asked for but not installed
    _refused([*base, "--runtime", "openvino"], "openvino package is not installed", "pip install")
    _refused([*base, "--runtime", "tensorrt"], "scoring.runtime")
    _refused([*base, "--precision", "fp64"], "scoring.precision")
    _refused([*base, *cpu, "--precision", "fp16"], "fp16 is for CUDA")
    cuda = write_config(tmp_path / "cuda.yaml", scoring={"device": "cuda"})
    _refused([*base, "--config", str(cuda)], "no CUDA device", "scoring.device")
    _refused([*base, "--config", str(write_config(tmp_path / "x.yaml", scoring={"device": "tpu"}))])
    _refused(["score", str(tmp_path / "a.zarr"), "--model", str(tmp_path)], "card.json")
    monkeypatch.setattr(openvino_engine, "installed", lambda: True)
    _refused([*base, *cpu, "--runtime", "openvino", "--precision", "fp16"], "OpenVINO")


def test_screen_refuses_each_bad_setting(
    tmp_path: Path,
    model_dir: Path,
    write_config: Callable[..., Path],
    no_openvino: None,
    no_gpu: None,
) -> None:
    slides = tmp_path / "slides"
    slides.mkdir()
    (slides / "a.tif").write_bytes(b"")  # the scorer is built before any slide is read

    def screen(name: str, **scoring: str) -> list[str]:
        cfg = write_config(tmp_path / f"{name}.yaml", scoring=scoring)
        out = tmp_path / f"out-{name}"
        return ["screen", str(slides), "--out", str(out), "--model", str(model_dir), "-c", str(cfg)]

    _refused(screen("ov", runtime="openvino"), "openvino package is not installed")
    _refused(screen("fp16", precision="fp16"), "fp16 is for CUDA")
    _refused(screen("cuda", device="cuda"), "no CUDA device")
    _refused(screen("rt", runtime="tensorrt"), "scoring.runtime")
    _refused([*screen("be"), "--backend", "bioformats"], "reader.backend")


def test_reading_commands_refuse_an_unknown_backend(tmp_path: Path) -> None:
    slide = DATA / "CMU-1-Small-Region.svs"
    _refused(["info", str(slide), "--backend", "bioformats"], "backend must be")
    _refused(["tile", str(slide), "--out", str(tmp_path), "--backend", "bioformats"], "backend")
    _refused(["review", str(tmp_path), "--backend", "bioformats"], "--backend", "tiffslide")


def test_train_refuses_a_bad_device_or_backend(tmp_path: Path, no_gpu: None) -> None:
    out = ["train", "--out", str(tmp_path / "model")]
    _refused([*out, "--device", "gpu"], "unknown device", "cuda[:N]")
    _refused([*out, "--device", "cuda"], "no CUDA device", "--device cpu")
    _refused([*out, "--backend", "bioformats"], "--backend")
    assert not (tmp_path / "model").exists()
