"""The gallery and review commands (export path; serving is tested in test_review_server)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cytoscreen.cli import app
from cytoscreen.review.marks import Mark, open_store


def test_gallery_command_writes_pages(results_dir: Path, ids: tuple[str, ...]) -> None:
    res = CliRunner().invoke(app, ["gallery", str(results_dir)])
    assert res.exit_code == 0, res.output
    assert (results_dir / "gallery" / "index.html").is_file()
    assert (results_dir / "gallery" / f"slide-{ids[0]}.html").is_file()


def test_review_export_writes_csv(results_dir: Path, tmp_path: Path, ids: tuple[str, ...]) -> None:
    with open_store(results_dir) as store:
        store.put(Mark(ids[1], 1, "normal", None, "dr", "m", "2025-01-01", 1, 2, 3, 4))
    out = tmp_path / "marks.csv"
    res = CliRunner().invoke(app, ["review", str(results_dir), "--export", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text("utf-8").splitlines()[1].startswith(f"{ids[1]},1,normal,,dr,m,")


def test_commands_refuse_other_folders(tmp_path: Path) -> None:
    for args in (["gallery", str(tmp_path)], ["review", str(tmp_path), "--export", "x.csv"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and "no slides/" in res.output
    assert not (tmp_path / "reviews.sqlite").exists()
