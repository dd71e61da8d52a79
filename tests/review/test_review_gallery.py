"""Static gallery: pages, escaping, links that resolve, nothing identifying."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from cytoscreen.review import load_results, render_index, write_gallery
from cytoscreen.review.gallery import render_slide, slide_page
from cytoscreen.review.results import NotAResultsFolder


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.links.append(value)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _parse(html: str) -> _Links:
    p = _Links()
    p.feed(html)
    return p


def test_index_orders_worst_first_and_counts_outcomes(results_dir: Path) -> None:
    view = load_results(results_dir)
    assert [s.outcome for s in view.slides] == ["failed", "review", "negative"]
    html = render_index(view)
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', html))
    assert counts == {"failed": "1", "review": "1", "negative": "1"}


def test_hostile_slide_name_is_escaped_everywhere(
    results_dir: Path, ids: tuple[str, ...], evil_name: str
) -> None:
    view = load_results(results_dir)
    evil = view.slide(ids[0])
    assert evil is not None and evil.name == evil_name
    for html in (render_index(view), render_slide(view, evil)):
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert" in html
        assert "<b>bold</b>" not in html  # warnings are text too
        # the only scripts are our own file and the JSON data block (escaped by tojson)
        for block in _parse(html).scripts:
            assert "<" not in block


def test_written_gallery_links_all_resolve(results_dir: Path, ids: tuple[str, ...]) -> None:
    index = write_gallery(load_results(results_dir))
    pages = sorted(index.parent.glob("*.html"))
    assert {p.name for p in pages} == {"index.html", *(slide_page(i) for i in ids)}
    n_images = 0
    for page in pages:
        for link in _parse(page.read_text("utf-8")).links:
            target = link.split("#", 1)[0]
            if not target:
                continue
            assert not re.match(r"^[a-z]+:", target), f"{page.name}: external link {link}"
            assert (page.parent / unquote(target)).is_file(), f"{page.name}: {link} missing"
            n_images += target.endswith(".png")
    assert n_images >= 2 * 4 + 2 * 2  # field images and heatmaps are linked


def test_only_pictures_screen_wrote_appear(results_dir: Path) -> None:
    index = write_gallery(load_results(results_dir))
    for page in index.parent.glob("*.html"):
        html = page.read_text("utf-8").lower()
        assert "macro" not in html and "label.png" not in html
        for link in _parse(html).links:
            if link.endswith(".png"):
                assert re.search(r"/(thumbnail|heatmap|fields/\d+)\.png$", link), link


def test_field_boxes_follow_the_slide_geometry(results_dir: Path, ids: tuple[str, ...]) -> None:
    view = load_results(results_dir)
    slide = view.slide(ids[1])
    assert slide is not None
    from cytoscreen.review.gallery import slide_geometry

    geo = slide_geometry(slide)
    assert geo is not None and (geo.width, geo.height) == (1400, 1000)
    html = render_slide(view, slide, geometry=geo)
    # field 1 is x 100..228, y 150..278 of a 1400 x 1000 slide
    assert "left:7.143%;top:15.000%;width:9.143%;height:12.800%" in html


def test_server_controls_only_in_server_mode(results_dir: Path, ids: tuple[str, ...]) -> None:
    view = load_results(results_dir)
    slide = view.slide(ids[0])
    assert slide is not None
    assert "data-label=" not in render_slide(view, slide, "static")
    assert render_slide(view, slide, "server").count('data-label="abnormal"') == 4


def test_not_a_results_folder(tmp_path: Path) -> None:
    with pytest.raises(NotAResultsFolder, match=str(tmp_path)):
        load_results(tmp_path)


def test_unsafe_or_mismatched_ids_are_left_out(results_dir: Path) -> None:
    bad = results_dir / "slides" / "x"
    bad.mkdir()
    (bad / "result.json").write_text('{"id": "../../etc", "status": "ok"}', "utf-8")
    assert len(load_results(results_dir).slides) == 3


def test_calibration_caveats_are_shown_once_not_per_slide(tmp_path: Path) -> None:
    from cytoscreen.review.results import load_results

    slides = tmp_path / "slides"
    caveat = "calibration: only 12 positive slides"
    for sid in ("a-00000001", "b-00000002"):
        (slides / sid).mkdir(parents=True)
        (slides / sid / "result.json").write_text(
            json.dumps(
                {
                    "id": sid,
                    "status": "ok",
                    "outcome": "review",
                    "score": 0.9,
                    "threshold": 0.5,
                    "warnings": [caveat, f"{sid}: scanty"],
                    "fields": [],
                }
            )
        )
    view = load_results(tmp_path)
    assert view.notices == ("only 12 positive slides",)
    assert all(s.warnings == (f"{s.id}: scanty",) for s in view.slides)
    html = render_index(view)
    assert html.count("only 12 positive slides") == 1


def test_cell_count_and_the_reasons_that_matter_are_shown(
    results_dir: Path, ids: tuple[str, ...]
) -> None:
    from cytoscreen.review.gallery import render_index, render_slide
    from cytoscreen.review.results import load_results

    results = load_results(results_dir)
    index = render_index(results, mode="static")
    assert "7,321" in index and "review: scores unlike the calibration slides" in index
    slide = results.slide(ids[0])
    assert slide is not None
    page = render_slide(results, slide, mode="static")
    assert "7,321 cells counted" in page
    assert "83% obscured" in page  # the estimated obscured share (result.json "obscured")
    assert 'data-value="0.834">83%</td>' in index
    negative = results.slide(ids[1])
    assert negative is not None and negative.obscured is None  # not recorded: unknown
    assert "obscured</span>" not in render_slide(results, negative, mode="static")
    assert "review: scores unlike the calibration slides" in page
    assert "score 0.91 &gt;= threshold" not in page  # routine lines stay in summary.csv
