"""The pages in a real headless browser (Chromium from the system, driven by Playwright).

Skipped with the reason when Playwright or /usr/bin/chromium is missing; nothing is installed
or downloaded by the tests.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cytoscreen.review import load_results, write_gallery
from cytoscreen.review.server import make_server

CHROMIUM = os.environ.get("CYTOSCREEN_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need `pip install playwright`"
)
if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(
        f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = ctx.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    ctx.close()


def _broken_images(page: Any) -> list[str]:
    return page.evaluate(
        "Array.from(document.images).filter(i => i.getAttribute('src'))"
        ".filter(i => !i.complete || i.naturalWidth === 0)"
        ".map(i => i.getAttribute('src'))"
    )


def _load_all_images(page: Any) -> None:
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading='eager')")
    page.wait_for_load_state("networkidle")


def test_static_gallery_from_disk(
    page: Any, results_dir: Path, ids: tuple[str, ...], evil_name: str
) -> None:
    index = write_gallery(load_results(results_dir))
    page.goto(index.as_uri())
    _load_all_images(page)
    assert page.locator("tr.slide-row").count() == 3
    assert _broken_images(page) == []
    assert page.locator("a.slide-link", has_text="<script>").inner_text() == evil_name
    assert page.evaluate("window.__xss === undefined")
    # filter by outcome, then sort by score
    page.click("button[data-outcome=review]")
    assert page.locator("tr.slide-row:visible").count() == 1
    page.click("button[data-outcome=all]")
    page.click("th:has-text('Score')")
    page.click("th:has-text('Score')")  # descending
    first = page.locator("tr.slide-row").first.get_attribute("data-outcome")
    assert first == "review"
    # open the slide page, keyboard through the fields, lightbox, next slide
    page.click(f"a[href='slide-{ids[0]}.html']")
    _load_all_images(page)
    assert _broken_images(page) == []
    assert page.locator("h1.slide-name").inner_text() == evil_name
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.locator("article.field.current").get_attribute("data-rank") == "3"
    page.keyboard.press("Enter")
    assert page.locator("#lightbox").is_visible()
    assert page.locator("#lightbox-img").get_attribute("src").endswith("fields/3.png")
    page.keyboard.press("Escape")
    page.keyboard.press("s")
    page.wait_for_url(f"**/slide-{ids[1]}.html")
    assert page.errors == []


@pytest.fixture
def served(results_dir: Path) -> Iterator[str]:
    server = make_server(results_dir, reviewer="Dr Browser", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.url
    server.shutdown()
    server.server_close()


def test_marking_in_the_browser_reaches_the_database(
    page: Any, served: str, results_dir: Path, ids: tuple[str, ...]
) -> None:
    page.goto(f"{served}/gallery/slide-{ids[0]}.html")
    _load_all_images(page)
    assert _broken_images(page) == []
    card = page.locator("article#field-2")
    card.locator("select.bethesda").select_option("ASC-H")
    card.locator("button[data-label=abnormal]").click()
    page.wait_for_selector("article#field-2.mark-abnormal")
    page.keyboard.press("ArrowRight")  # field 3, marked by key
    page.keyboard.press("a")
    page.wait_for_selector("article#field-3.mark-artefact")
    with sqlite3.connect(results_dir / "reviews.sqlite") as db:
        rows = db.execute(
            "SELECT rank, label, bethesda, reviewer FROM marks ORDER BY rank"
        ).fetchall()
    assert rows == [(2, "abnormal", "ASC-H", "Dr Browser"), (3, "artefact", None, "Dr Browser")]
    page.reload()  # marks shown again from the database
    assert page.locator("article.field.marked").count() == 2
    assert page.errors == []


def test_viewer_shows_the_field_in_the_slide(page: Any, served: str, ids: tuple[str, ...]) -> None:
    page.goto(f"{served}/viewer/{ids[0]}?field=2")
    page.wait_for_selector("body[data-viewer-ready='1']", timeout=15_000)
    page.wait_for_load_state("networkidle")
    assert page.locator(".fieldbox").count() == 4
    box = page.locator(".fieldbox[data-rank='2']")
    assert "current" in (box.get_attribute("class") or "")
    assert box.is_visible()
    assert page.errors == []
