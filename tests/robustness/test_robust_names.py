"""Issue 7, cases 10 and 11: slides whose names collide (same name in two folders, names that
differ only in case or extension) and names with Unicode, spaces, quotes, newlines and markup.

Every slide gets its own id and output folder; the summary CSV reads back to the exact paths;
the gallery shows the names as text, never as markup."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from cytoscreen.review import write_gallery
from cytoscreen.review.results import load_results

SCRIPT_DIR = "<script>alert('dir')<"  # with the file below, the path reads ...</script>...
NAMES = [
    "a/x.svs",
    "b/x.svs",
    "x.svs",
    "x.SVS",
    "x.ndpi",
    "dir with spaces/ünïcødé 漢字 \"double\" 'single'.tiff",
    f"{SCRIPT_DIR}/script><img src=x onerror=alert(1)> & co.tiff",
    "new\nline, comma.tiff",
]


@pytest.fixture(scope="module")
def named_run(
    tmp_path_factory: pytest.TempPathFactory, good_slide: Path, run_screen: Any
) -> tuple[Path, Path, Any]:
    root = tmp_path_factory.mktemp("names") / "in"
    for name in NAMES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(good_slide, root / name)
    out = root.parent / "out"
    return root, out, run_screen([root], out)


def test_every_slide_screened_with_its_own_id_and_outputs(
    named_run: tuple[Path, Path, Any], slide_results: Any
) -> None:
    root, out, result = named_run
    assert result.exit_code == 0, result.output
    results = slide_results(out)
    assert set(results) == {str(root / n) for n in NAMES}
    assert all(r["status"] == "ok" for r in results.values())
    ids = {r["id"] for r in results.values()}
    dirs = {r["_dir"] for r in results.values()}
    assert len(ids) == len(dirs) == len(NAMES)  # nothing shared, nothing overwritten
    for r in results.values():
        assert Path(r["_dir"]).name == r["id"]
        assert (Path(r["_dir"]) / "fields.csv").is_file()
        assert r["id"].isascii() and "/" not in r["id"]


def test_summary_csv_reads_back_the_exact_paths(
    named_run: tuple[Path, Path, Any], summary_rows: Any
) -> None:
    root, out, _ = named_run
    rows = summary_rows(out)  # csv.DictReader: a bad quote would split or merge rows
    assert set(rows) == {str(root / n) for n in NAMES}
    assert all(r["status"] == "ok" for r in rows.values())


def test_gallery_shows_names_as_text(named_run: tuple[Path, Path, Any]) -> None:
    root, out, _ = named_run
    index = write_gallery(load_results(out))
    pages = [index, *index.parent.glob("*.html")]
    text = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    assert "<script>alert(" not in text and "<img src=x" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text  # shown, escaped
    assert "ünïcødé 漢字" in text
