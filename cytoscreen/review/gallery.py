"""Gallery pages: a batch index and one page per slide, from Jinja2 templates (autoescaped).

The same templates serve two modes: ``static`` (``cytoscreen gallery``: plain files under
``RESULTS/gallery/`` that open from disk, offline) and ``server`` (``cytoscreen review``: the
same pages plus the marking controls and links into the slide viewer). Pages only show
pictures ``screen`` wrote from pyramid levels (thumbnail, heatmap, fields); label and macro
images and vendor metadata are never used.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import jinja2

import cytoscreen
from cytoscreen.fsutil import write_bytes_atomic
from cytoscreen.review.marks import BETHESDA_ABNORMAL, LABELS, Mark
from cytoscreen.review.results import (
    OUTCOME_LABELS,
    OUTCOMES,
    ResultsView,
    SlideView,
)

Mode = Literal["static", "server"]
HERE = Path(__file__).parent
STATIC = HERE / "static"
GALLERY_DIR = "gallery"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["score"] = lambda v: "–" if v is None else f"{v:.3f}"
    env.filters["url"] = lambda v: quote(str(v), safe="")
    env.globals["outcome_labels"] = OUTCOME_LABELS
    env.globals["version"] = cytoscreen.__version__
    return env


def slide_page(slide_id: str) -> str:
    """File name of a slide's page (ids are checked safe by ``load_results``)."""
    return f"slide-{slide_id}.html"


@dataclass(frozen=True)
class SlideGeometry:
    """Level-0 size of a slide, for placing the field boxes over its heatmap."""

    width: int
    height: int


def slide_geometry(slide: SlideView) -> SlideGeometry | None:
    """Open the slide (metadata of its pyramid only) for its size; None if it cannot be read."""
    from cytoscreen.errors import CytoscreenError
    from cytoscreen.io import open_slide

    if not slide.path:
        return None
    try:
        backend: Any = slide.backend or "auto"
        mpp = slide.mpp
        with open_slide(slide.path, backend=backend, mpp=mpp) as reader:
            w, h = reader.meta.dimensions
    except (CytoscreenError, OSError, ValueError):
        return None
    return SlideGeometry(int(w), int(h))


def _field_boxes(slide: SlideView, geo: SlideGeometry | None) -> list[dict[str, Any]]:
    if geo is None:
        return []
    return [
        {
            "rank": f.rank,
            "left": 100.0 * f.x0 / geo.width,
            "top": 100.0 * f.y0 / geo.height,
            "width": 100.0 * (f.x1 - f.x0) / geo.width,
            "height": 100.0 * (f.y1 - f.y0) / geo.height,
        }
        for f in slide.fields
    ]


def _mark_dict(m: Mark) -> dict[str, Any]:
    return {"label": m.label, "bethesda": m.bethesda, "reviewer": m.reviewer, "at": m.marked_at}


def render_index(
    results: ResultsView,
    mode: Mode = "static",
    marked: Mapping[str, int] | None = None,
) -> str:
    """The batch index: slides worst first, filterable by outcome and score, sortable."""
    counts = results.outcome_counts()
    return (
        environment()
        .get_template("index.html.j2")
        .render(
            results=results,
            slides=results.slides,
            counts=[(o, counts[o]) for o in OUTCOMES if counts[o]],
            page=slide_page,
            mode=mode,
            marked=marked or {},
            static_prefix=_static_prefix(mode),
        )
    )


def render_slide(
    results: ResultsView,
    slide: SlideView,
    mode: Mode = "static",
    marks: Sequence[Mark] = (),
    geometry: SlideGeometry | None = None,
) -> str:
    """One slide's page: heatmap with the fields boxed, and the ranked field grid."""
    ids = [s.id for s in results.slides]
    i = ids.index(slide.id)
    prev_id = ids[i - 1] if i > 0 else None
    next_id = ids[i + 1] if i + 1 < len(ids) else None
    by_rank = {m.rank: _mark_dict(m) for m in marks}
    data = {
        "mode": mode,
        "slide": slide.id,
        "ranks": [f.rank for f in slide.fields],
        "next": slide_page(next_id) if next_id else None,
        "prev": slide_page(prev_id) if prev_id else None,
        "index": "index.html",
        "marks": {str(k): v for k, v in by_rank.items()},
        "labels": list(LABELS),
        "bethesda": list(BETHESDA_ABNORMAL),
    }
    return (
        environment()
        .get_template("slide.html.j2")
        .render(
            results=results,
            slide=slide,
            position=i + 1,
            total=len(ids),
            prev_page=data["prev"],
            next_page=data["next"],
            boxes=_field_boxes(slide, geometry),
            img_prefix=f"../slides/{quote(slide.id, safe='')}/",
            mode=mode,
            marks=by_rank,
            bethesda=BETHESDA_ABNORMAL,
            data=data,
            static_prefix=_static_prefix(mode),
        )
    )


def render_viewer(results: ResultsView, slide: SlideView, field: int | None) -> str:
    """The deep-zoom viewer page (server mode only: its tiles come from the server)."""
    data = {
        "slide": slide.id,
        "dzi": f"/dzi/{quote(slide.id, safe='')}.dzi",
        "fields": [
            {"rank": f.rank, "score": f.score, "x0": f.x0, "y0": f.y0, "x1": f.x1, "y1": f.y1}
            for f in slide.fields
        ],
        "field": field,
        "back": f"/gallery/{slide_page(slide.id)}",
    }
    return (
        environment()
        .get_template("viewer.html.j2")
        .render(results=results, slide=slide, data=data, static_prefix="/static/", mode="server")
    )


def _static_prefix(mode: Mode) -> str:
    return "static/" if mode == "static" else "/static/"


def copy_static(dest: Path, with_viewer: bool = False) -> None:
    """Copy the page assets (CSS, JS; OpenSeadragon only where the viewer is served)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("review.css", "review.js"):
        shutil.copyfile(STATIC / name, dest / name)
    if with_viewer:
        shutil.copytree(STATIC / "openseadragon", dest / "openseadragon", dirs_exist_ok=True)


def write_gallery(results: ResultsView, out_dir: str | Path | None = None) -> Path:
    """Write the static gallery (``RESULTS/gallery/`` by default); returns its index.html.

    The pages link to the pictures in ``RESULTS/slides/<id>/`` by relative paths, so the
    gallery must stay inside the results folder (the default) to find them.
    """
    out = Path(out_dir) if out_dir is not None else results.root / GALLERY_DIR
    out.mkdir(parents=True, exist_ok=True)
    copy_static(out / "static")
    for slide in results.slides:
        html = render_slide(results, slide, "static", geometry=slide_geometry(slide))
        write_bytes_atomic(out / slide_page(slide.id), html.encode("utf-8"))
    index = out / "index.html"
    write_bytes_atomic(index, render_index(results, "static").encode("utf-8"))
    return index
