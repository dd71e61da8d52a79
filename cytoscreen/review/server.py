"""``cytoscreen review``: a small local web server for the pathologist's review.

Serves the gallery pages (with marking controls), the pictures ``screen`` wrote, a deep-zoom
viewer of each slide (OpenSeadragon, vendored; tiles read through the project's reader) and a
JSON API for marks kept in ``RESULTS/reviews.sqlite``. Binds 127.0.0.1 unless told otherwise.
Only the standard library's HTTP server is used: this is one reviewer's workstation tool.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cytoscreen.errors import CytoscreenError
from cytoscreen.io import SlideReader, open_slide
from cytoscreen.review import deepzoom
from cytoscreen.review.gallery import STATIC, render_index, render_slide, render_viewer
from cytoscreen.review.marks import Mark, MarkStore, marks_csv, now_iso, open_store
from cytoscreen.review.results import ResultsView, SlideView, load_results

MAX_BODY = 16_384
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"
)
_ID = r"([A-Za-z0-9][A-Za-z0-9_.-]{0,200})"
ROUTES = {
    "page": re.compile(rf"^/gallery/slide-{_ID}\.html$"),
    "image": re.compile(rf"^/slides/{_ID}/(thumbnail\.png|heatmap\.png|fields/[0-9]{{1,5}}\.png)$"),
    "viewer": re.compile(rf"^/viewer/{_ID}$"),
    "dzi": re.compile(rf"^/dzi/{_ID}\.dzi$"),
    "tile": re.compile(rf"^/dzi/{_ID}_files/([0-9]{{1,2}})/([0-9]{{1,6}})_([0-9]{{1,6}})\.jpeg$"),
    "static": re.compile(r"^/static/([A-Za-z0-9_./-]{1,200})$"),
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".jpeg": "image/jpeg",
    ".txt": "text/plain; charset=utf-8",
}


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ReviewApp:
    """What the handlers share: the results folder, the mark store, open slide readers."""

    root: Path
    reviewer: str
    store: MarkStore
    backend: str = "auto"
    _readers: dict[str, SlideReader] = field(default_factory=dict)
    _read_lock: threading.Lock = field(default_factory=threading.Lock)

    def results(self) -> ResultsView:
        return load_results(self.root)  # re-read: a running screen may add slides

    def slide(self, slide_id: str) -> tuple[ResultsView, SlideView]:
        results = self.results()
        slide = results.slide(slide_id)
        if slide is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no slide {slide_id} in {self.root}")
        return results, slide

    def reader(self, slide: SlideView) -> SlideReader:
        """An open reader of the slide (opened once, kept until the server stops)."""
        if slide.id not in self._readers:
            backend: Any = slide.backend or self.backend
            mpp = slide.mpp if slide.mpp else None
            try:
                self._readers[slide.id] = open_slide(slide.path, backend=backend, mpp=mpp)
            except CytoscreenError as err:
                raise HttpError(HTTPStatus.NOT_FOUND, str(err)) from err
        return self._readers[slide.id]

    def tile(self, slide: SlideView, level: int, col: int, row: int) -> bytes:
        with self._read_lock:  # readers are not guaranteed thread-safe
            reader = self.reader(slide)
            w, h = reader.meta.dimensions
            try:
                box = deepzoom.tile_box(w, h, level, col, row)
            except ValueError as err:
                raise HttpError(HTTPStatus.NOT_FOUND, str(err)) from err
            return deepzoom.render_tile(reader, box)

    def dzi(self, slide: SlideView) -> str:
        with self._read_lock:
            w, h = self.reader(slide).meta.dimensions
        return deepzoom.dzi_xml(w, h)

    def marked_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.store.marks(reviewer=self.reviewer):
            counts[m.slide_id] = counts.get(m.slide_id, 0) + 1
        return counts

    def put_mark(self, body: dict[str, Any]) -> Mark:
        slide_id, rank = str(body.get("slide_id", "")), body.get("rank")
        _, slide = self.slide(slide_id)
        f = slide.field(rank) if isinstance(rank, int) else None
        if f is None:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"{slide.name}: no field {rank!r}")
        bethesda = body.get("bethesda")
        mark = Mark(
            slide_id=slide.id,
            rank=f.rank,
            label=str(body.get("label", "")),
            bethesda=str(bethesda) if bethesda else None,
            reviewer=self.reviewer,
            model_id=slide.model_id,
            marked_at=now_iso(),
            x0=f.x0,
            y0=f.y0,
            x1=f.x1,
            y1=f.y1,
        )
        try:
            self.store.put(mark)
        except CytoscreenError as err:
            raise HttpError(HTTPStatus.BAD_REQUEST, str(err)) from err
        return mark

    def close(self) -> None:
        with self._read_lock:
            for r in self._readers.values():
                r.close()
            self._readers.clear()
        self.store.close()


def _mark_json(m: Mark | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "slide_id": m.slide_id,
        "rank": m.rank,
        "label": m.label,
        "bethesda": m.bethesda,
        "reviewer": m.reviewer,
        "model_id": m.model_id,
        "marked_at": m.marked_at,
    }


class Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    # -------------------------------------------------------------- plumbing
    def _send(self, status: HTTPStatus, body: bytes, ctype: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data).encode("utf-8"), "application/json")

    def _file(self, path: Path, root: Path) -> None:
        try:
            real = path.resolve(strict=True)
        except OSError:
            raise HttpError(HTTPStatus.NOT_FOUND, "no such file") from None
        if not real.is_relative_to(root.resolve()) or not real.is_file():
            raise HttpError(HTTPStatus.NOT_FOUND, "no such file")
        ctype = TYPES.get(real.suffix, "application/octet-stream")
        self._send(HTTPStatus.OK, real.read_bytes(), ctype, cache=real.suffix != ".png")

    def _body(self) -> dict[str, Any]:
        if self.headers.get_content_type() != "application/json":
            # A JSON content type cannot be sent cross-site without a CORS preflight, which this
            # server never grants: pages elsewhere cannot post marks.
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        n = int(self.headers.get("Content-Length") or 0)
        if not 0 < n <= MAX_BODY:
            raise HttpError(HTTPStatus.BAD_REQUEST, "empty or oversized body")
        try:
            body = json.loads(self.rfile.read(n))
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "body is not JSON") from None
        if not isinstance(body, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        return body

    def _handle(self, method: str) -> None:
        try:
            self._route(method)
        except HttpError as err:
            if self.path.startswith("/api/"):
                self._json({"error": err.message}, err.status)
            else:
                page = f"<!DOCTYPE html><title>{err.status.value}</title><p>{_esc(err.message)}</p>"
                self._send(err.status, page.encode("utf-8"), TYPES[".html"])

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    # -------------------------------------------------------------- routes
    def _route(self, method: str) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        if path == "/api/marks":
            if method == "GET":
                slide = query.get("slide", [None])[0]
                self._json({"marks": [_mark_json(m) for m in app.store.marks(slide_id=slide)]})
            elif method == "POST":
                self._json({"mark": _mark_json(app.put_mark(self._body()))})
            elif method == "DELETE":
                body = self._body()
                rank = body.get("rank")
                app.store.delete(str(body.get("slide_id")), int(rank or 0), app.reviewer)
                self._json({"mark": None})
            return
        if method != "GET":
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, "read-only address")
        if path in ("/", "/gallery", "/gallery/"):
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", "/gallery/index.html")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/favicon.ico":
            self.send_response(HTTPStatus.NO_CONTENT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/gallery/index.html":
            html = render_index(app.results(), "server", app.marked_counts())
            self._send(HTTPStatus.OK, html.encode("utf-8"), TYPES[".html"])
            return
        if path == "/api/export.csv":
            csv_bytes = marks_csv(app.store.marks()).encode("utf-8")
            self._send(HTTPStatus.OK, csv_bytes, "text/csv; charset=utf-8")
            return
        for name, pattern in ROUTES.items():
            m = pattern.match(path)
            if m:
                getattr(self, f"_get_{name}")(*m.groups(), query=query)
                return
        raise HttpError(HTTPStatus.NOT_FOUND, f"nothing at {path}")

    def _get_page(self, slide_id: str, query: dict[str, list[str]]) -> None:
        app = self.server.app
        results, slide = app.slide(slide_id)
        marks = app.store.marks(slide_id=slide.id, reviewer=app.reviewer)
        from cytoscreen.review.gallery import slide_geometry

        html = render_slide(results, slide, "server", marks, slide_geometry(slide))
        self._send(HTTPStatus.OK, html.encode("utf-8"), TYPES[".html"])

    def _get_image(self, slide_id: str, name: str, query: dict[str, list[str]]) -> None:
        root = self.server.app.root / "slides" / slide_id
        self._file(root / name, root)

    def _get_viewer(self, slide_id: str, query: dict[str, list[str]]) -> None:
        results, slide = self.server.app.slide(slide_id)
        raw = query.get("field", [""])[0]
        field_rank = int(raw) if raw.isdigit() else None
        html = render_viewer(results, slide, field_rank)
        self._send(HTTPStatus.OK, html.encode("utf-8"), TYPES[".html"])

    def _get_dzi(self, slide_id: str, query: dict[str, list[str]]) -> None:
        _, slide = self.server.app.slide(slide_id)
        xml = self.server.app.dzi(slide).encode("utf-8")
        self._send(HTTPStatus.OK, xml, "application/xml")

    def _get_tile(
        self, slide_id: str, level: str, col: str, row: str, query: dict[str, list[str]]
    ) -> None:
        _, slide = self.server.app.slide(slide_id)
        jpeg = self.server.app.tile(slide, int(level), int(col), int(row))
        self._send(HTTPStatus.OK, jpeg, TYPES[".jpeg"], cache=True)

    def _get_static(self, name: str, query: dict[str, list[str]]) -> None:
        self._file(STATIC / name, STATIC)


def _esc(text: str) -> str:
    from html import escape

    return escape(text, quote=True)


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: ReviewApp, host: str, port: int, verbose: bool = False) -> None:
        self.app = app
        self.verbose = verbose
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def server_close(self) -> None:
        super().server_close()
        self.app.close()


def make_server(
    results: str | Path,
    *,
    reviewer: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    backend: str = "auto",
    verbose: bool = False,
) -> ReviewServer:
    """A review server for ``results`` (not yet serving: call ``serve_forever``).

    ``port=0`` picks a free port (see ``server.url``). Raises ``NotAResultsFolder`` when
    ``results`` is not a screen's output folder, ``BadMark`` for an empty reviewer name.
    """
    root = Path(results)
    load_results(root)  # fail early, naming the folder
    if not reviewer.strip():
        from cytoscreen.review.marks import BadMark

        raise BadMark("no reviewer name", subject=root, hint="pass --reviewer NAME")
    app = ReviewApp(root, reviewer.strip(), open_store(root), backend)
    try:
        return ReviewServer(app, host, port, verbose)
    except OSError as exc:
        app.close()
        raise CytoscreenError(
            f"cannot listen on {host}:{port} ({exc})",
            subject=root,
            hint="choose another --port (0 picks a free one)",
        ) from exc
