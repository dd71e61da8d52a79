"""Issue 7, case 12: a manifest with a missing file, a duplicate id, an unknown label, ``../``
and absolute paths, a symlink leading out of the data root, a byte-order mark and CRLF line
ends. ``cytoscreen qa`` and ``cytoscreen calibrate`` report every row's problem in one error,
before any work (nothing is written), and exit non-zero."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cytoscreen.cli import app


@pytest.fixture(scope="module")
def bad_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("manifest")
    root = base / "data"
    root.mkdir()
    for name in ("a.svs", "b.svs", "c.svs", "d.svs"):
        (root / name).write_bytes(b"slide")
    secret = base / "outside.svs"
    secret.write_bytes(b"outside")
    (root / "escape.svs").symlink_to(secret)
    rows = [
        "slide_id,path,label,ground_truth",
        "s1,a.svs,negative,",
        "s2,b.svs,positive,missing.cells.json",  # ground truth file missing
        "s1,c.svs,negative,",  # duplicate id
        "s4,d.svs,suspicious,",  # unknown label
        "s5,../outside.svs,negative,",  # climbs out
        f"s6,{secret},negative,",  # absolute
        "s7,escape.svs,positive,",  # symlink out of the root
    ]
    manifest = root / "manifest.csv"
    manifest.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")  # BOM, CRLF
    return manifest


EXPECTED = [
    "line 3 (s2): ground_truth file 'missing.cells.json' not found",
    "line 4 (s1): duplicate slide_id (first on line 2)",
    "line 5 (s4): label 'suspicious'",
    "line 6 (s5): path '../outside.svs' climbs out",
    "line 7 (s6): path ",  # ... is absolute
    "line 8 (s7): path 'escape.svs' leads outside the data root",
]


@pytest.mark.parametrize("command", ["qa", "calibrate"])
def test_all_manifest_problems_reported_together_before_any_work(
    bad_manifest: Path, tmp_path: Path, command: str
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    out = tmp_path / ("qa" if command == "qa" else "calibration.json")
    args = [command, "--manifest", str(bad_manifest), "--results", str(results), "--out", str(out)]
    result: Any = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    text = " ".join(result.output.split())  # the CLI may wrap long lines
    assert str(bad_manifest) in text and "6 problem(s)" in text, result.output
    for problem in EXPECTED:
        assert problem in text, problem
    assert "is absolute" in text
    assert "line 2 " not in text  # the good row (BOM and CRLF did not spoil the header)
    assert not out.exists()  # nothing was done
