"""The review server over HTTP on 127.0.0.1 (urllib; no browser)."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cytoscreen.review.server import ReviewServer, make_server


def _start(results: Path) -> ReviewServer:
    server = make_server(results, reviewer="Dr Test", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _stop(server: ReviewServer) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(results_dir: Path) -> Iterator[ReviewServer]:
    s = _start(results_dir)
    yield s
    _stop(s)


def _get(server: ReviewServer, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def _send(
    server: ReviewServer, body: Any, method: str = "POST", ctype: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        server.url + "/api/marks", json.dumps(body).encode(), {"Content-Type": ctype}, method=method
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_binds_localhost_and_serves_pages(server: ReviewServer, ids: tuple[str, ...]) -> None:
    assert server.server_address[0] == "127.0.0.1"
    status, ctype, body = _get(server, "/")
    assert status == 200 and ctype.startswith("text/html") and b"Screening results" in body
    status, _, body = _get(server, f"/gallery/slide-{ids[0]}.html")
    assert status == 200 and b"&lt;script&gt;" in body and b"<script>alert" not in body
    assert _get(server, f"/slides/{ids[0]}/fields/1.png")[:2] == (200, "image/png")
    assert _get(server, "/static/openseadragon/openseadragon.min.js")[0] == 200
    assert _get(server, f"/viewer/{ids[0]}?field=2")[0] == 200


@pytest.mark.parametrize(
    "path",
    ["/slides/x/result.json", "/slides/../run.json", "/static/../marks.py",
     "/static/%2e%2e/server.py", "/gallery/slide-nobody.html",
     "/slides/negative-11111111/../../run.json", "/etc/passwd"],
)  # fmt: skip
def test_nothing_else_is_served(server: ReviewServer, path: str) -> None:
    assert _get(server, path)[0] == 404


def test_a_mark_goes_into_the_database_at_once(
    server: ReviewServer, results_dir: Path, ids: tuple[str, ...]
) -> None:
    status, body = _send(
        server, {"slide_id": ids[1], "rank": 2, "label": "abnormal", "bethesda": "LSIL"}
    )
    assert status == 200 and body["mark"]["reviewer"] == "Dr Test"
    with sqlite3.connect(results_dir / "reviews.sqlite") as db:
        rows = db.execute(
            "SELECT slide_id, rank, label, bethesda, model_id, x0 FROM marks"
        ).fetchall()
    assert rows == [(ids[1], 2, "abnormal", "LSIL", "tiny-model-abc", 300)]
    status, _, csv_body = _get(server, "/api/export.csv")
    assert status == 200 and f"{ids[1]},2,abnormal,LSIL,Dr Test".encode() in csv_body
    page = _get(server, f"/gallery/slide-{ids[1]}.html")[2].decode()
    assert "mark-abnormal" in page
    assert _send(server, {"slide_id": ids[1], "rank": 2}, method="DELETE") == (200, {"mark": None})
    assert json.loads(_get(server, "/api/marks")[2]) == {"marks": []}


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [({"slide_id": "negative-11111111", "rank": 9, "label": "normal"}, "application/json", 400),
     ({"slide_id": "negative-11111111", "rank": 1, "label": "abnormal"}, "application/json", 400),
     ({"slide_id": "nobody-1", "rank": 1, "label": "normal"}, "application/json", 404),
     ({"slide_id": "negative-11111111", "rank": 1, "label": "normal"}, "text/plain", 415)],
)  # fmt: skip
def test_bad_marks_are_refused(
    server: ReviewServer, results_dir: Path, body: dict[str, Any], ctype: str, status: int
) -> None:
    got, answer = _send(server, body, ctype=ctype)
    assert got == status and answer["error"]
    assert json.loads(_get(server, "/api/marks")[2]) == {"marks": []}


def test_marks_survive_a_restart(results_dir: Path, ids: tuple[str, ...]) -> None:
    first = _start(results_dir)
    assert _send(first, {"slide_id": ids[0], "rank": 1, "label": "artefact"})[0] == 200
    _stop(first)
    second = _start(results_dir)
    try:
        marks = json.loads(_get(second, f"/api/marks?slide={ids[0]}")[2])["marks"]
        assert [(m["rank"], m["label"]) for m in marks] == [(1, "artefact")]
    finally:
        _stop(second)


def test_deep_zoom_descriptor_and_tiles(server: ReviewServer, ids: tuple[str, ...]) -> None:
    status, _, xml = _get(server, f"/dzi/{ids[1]}.dzi")
    assert status == 200 and b'Width="1400" Height="1000"' in xml
    status, ctype, data = _get(server, f"/dzi/{ids[1]}_files/11/5_3.jpeg")
    assert (status, ctype) == (200, "image/jpeg")
    assert Image.open(io.BytesIO(data)).size == (1400 - 5 * 256, 1000 - 3 * 256)
    assert _get(server, f"/dzi/{ids[1]}_files/11/6_0.jpeg")[0] == 404
    assert _get(server, f"/dzi/{ids[2]}.dzi")[0] == 404  # the failed slide's file is gone
