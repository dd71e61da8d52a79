"""Paths as records show them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytoscreen.fsutil import shown_path


def test_shown_path_is_relative_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path)
    assert shown_path(tmp_path / "work" / "manifest.csv") == str(Path("work") / "manifest.csv")
    assert shown_path("work/../work/x.csv") == str(Path("work") / "x.csv")


def test_shown_path_is_absolute_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert shown_path(tmp_path / "b" / "m.csv") == str((tmp_path / "b" / "m.csv").resolve())
