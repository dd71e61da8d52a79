"""Deciding "no GPU here" without importing torch, and asking torch whenever one may be there."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytoscreen.scoring import device


def test_hidden_gpus_rule_cuda_out(monkeypatch: pytest.MonkeyPatch) -> None:
    for hidden in ("", "-1", " "):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert device.cuda_ruled_out()


def test_a_gpu_driver_means_ask_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(device.sys, "platform", "linux")
    monkeypatch.setattr(device, "_GPU_DRIVER_PATHS", (str(tmp_path / "nvidiactl"),))
    assert device.cuda_ruled_out()  # no driver file
    (tmp_path / "nvidiactl").touch()
    assert not device.cuda_ruled_out()  # a driver: only torch can say
    monkeypatch.setattr(device.sys, "platform", "darwin")
    assert not device.cuda_ruled_out()  # no cheap test elsewhere: ask torch


def test_device_type_asks_torch_only_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    import cytoscreen.scoring.runtime as runtime

    asked: list[str] = []

    def fake_resolve(name: str) -> object:
        asked.append(name)
        return type("Dev", (), {"type": "cuda"})()

    monkeypatch.setattr(runtime, "resolve_device", fake_resolve)
    monkeypatch.setattr(device, "cuda_ruled_out", lambda: True)
    assert device.device_type("cpu") == "cpu" and device.device_type("auto") == "cpu"
    assert asked == []
    monkeypatch.setattr(device, "cuda_ruled_out", lambda: False)
    assert device.device_type("auto") == "cuda" and asked == ["auto"]
    assert device.device_type("cuda") == "cuda" and asked == ["auto", "cuda"]
